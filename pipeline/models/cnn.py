"""Dilated temporal convolution network (TCN; Bai et al. 2018, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling").

Layer i convolves with dilation base**(i mod cycle); causal mode pads on the left only, so output t
sees inputs t - (k-1)*dilation .. t. Receptive field: 1 + (k-1) * sum of dilations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ModelConfig
from pipeline.models.base import Backbone, zero_padding
from pipeline.models.registry import register_backbone


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
