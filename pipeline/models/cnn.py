"""Convolutional models: the dilated TCN and Kim's sentence CNN (backbones), and the `conv` block of
conv+attention stacks.

TCN (Bai et al. 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks for
Sequence Modeling"): layer i convolves with dilation base**(i mod cycle); causal mode pads on the left
only, so output t sees inputs t - (k-1)*dilation .. t. Receptive field: 1 + (k-1) * sum of dilations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import Backbone, Block, Complexity, zero_padding
from pipeline.models.registry import register_backbone, register_block
from pipeline.schema import ModelConfig


@dataclass
class TCNConfig(ModelConfig):
    kernel_size: int = 3
    dilation_base: int = 2
    dilation_cycle: int = 8  # dilations restart at 1 after this many layers


class TemporalConv(nn.Module):
    """Conv1d over (B, L, D) with causal (left) or centred ('same') zero padding."""

    def __init__(self, d_in: int, d_out: int, kernel_size: int, dilation: int, causal: bool, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(d_in, d_out, kernel_size, dilation=dilation, groups=groups)
        total = (kernel_size - 1) * dilation
        self.pad = (total, 0) if causal else (total // 2, total - total // 2)

    def forward(self, x):
        return self.conv(F.pad(x.transpose(1, 2), self.pad)).transpose(1, 2)


@register_backbone("tcn", TCNConfig)
class TCN(Backbone):
    # Dilated causal convolutions: k taps per layer; a path spans the sequence in log_k(n) layers.
    complexity = Complexity("k·n·d²", 1, "n·d", 1, "—", None, "log_k(n)")
    def __init__(self, cfg: TCNConfig, causal: bool):
        super().__init__(cfg, causal)
        self.dilations = [cfg.dilation_base ** (i % cfg.dilation_cycle) for i in range(cfg.n_layers)]
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in self.dilations)
        self.convs = nn.ModuleList(TemporalConv(cfg.d_model, cfg.d_model, cfg.kernel_size, d, causal)
                                   for d in self.dilations)
        self.mixes = nn.ModuleList(nn.Linear(cfg.d_model, cfg.d_model) for _ in self.dilations)
        self.drop = nn.Dropout(cfg.dropout)
        self.final_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x, mask=None):
        for norm, conv, mix in zip(self.norms, self.convs, self.mixes):
            h = zero_padding(norm(x), None if self.causal else mask)
            x = x + self.drop(mix(F.gelu(conv(h))))
        return self.final_norm(x)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.cfg.kernel_size - 1) * sum(self.dilations)


@dataclass
class KimCNNConfig(ModelConfig):
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    n_filters: int = 100  # feature maps per kernel width, as in Kim (2014)


@register_backbone("kim-cnn", KimCNNConfig)
class KimCNN(Backbone):
    """Kim (2014), "Convolutional Neural Networks for Sentence Classification": parallel convolutions of
    several widths with ReLU over the embeddings.

    Kim max-pools each feature map over time and classifies; the backbone contract is per position, so
    the concatenated maps are projected back to d_model at every position, and the task pools (Kim's
    max-over-time pooling is task.pooling=max; with mean pooling the projection commutes with the
    mean). Layers repeat with a residual when n_layers > 1. Windows are centred, so it is bidirectional
    only; pads are zeroed before each convolution so they look like the zero padding of a shorter input.
    """

    causal_capable = False
    complexity = Complexity("k·n·d²", 1, "n·d", 1, "—", None, "n/k")

    def __init__(self, cfg: KimCNNConfig, causal: bool):
        super().__init__(cfg, causal)
        maps = len(cfg.kernel_sizes) * cfg.n_filters
        self.layers = nn.ModuleList(
            nn.ModuleDict({"convs": nn.ModuleList(TemporalConv(cfg.d_model, cfg.n_filters, k, 1, causal=False)
                                                  for k in cfg.kernel_sizes),
                           "proj": nn.Linear(maps, cfg.d_model)})
            for _ in range(cfg.n_layers))
        self.drop = nn.Dropout(cfg.dropout)

    @classmethod
    def width_step(cls, cfg: KimCNNConfig) -> int:
        # Parameters grow by ~(sum(k) + len(k)) * n_filters per unit of width: coarser steps miss 5%.
        return 1

    def forward(self, x, mask=None):
        for i, layer in enumerate(self.layers):
            h = zero_padding(x, mask)
            h = torch.cat([F.relu(conv(h)) for conv in layer["convs"]], -1)
            h = layer["proj"](self.drop(h))  # Kim applies dropout to the pooled features, before the output layer
            x = h if i == 0 else x + h
        return x


@dataclass
class LocalConvSettings:
    kernel_size: int = 3


@register_block("conv", LocalConvSettings)
class LocalConv(Block):
    """Depthwise local convolution then a pointwise mix: the convolutional half of conv+attention hybrids."""

    complexity = Complexity("k·n·d", 1, "n·d", 1, "k·d (conv buffer)", 0, "n/k")

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        k = self.settings.kernel_size
        self.depthwise = TemporalConv(cfg.d_model, cfg.d_model, k, 1, causal, groups=cfg.d_model)
        self.pointwise = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x, mask=None):
        x = zero_padding(x, None if self.causal else mask)
        return self.pointwise(F.gelu(self.depthwise(x)))

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.settings.kernel_size - 1, self.cfg.d_model, device=device)

    def step(self, x_t, state):
        window = torch.cat([state, x_t.unsqueeze(1)], 1)  # the last k inputs
        y = self.depthwise.conv(window.transpose(1, 2)).squeeze(-1)
        return self.pointwise(F.gelu(y)), window[:, 1:]
