"""Recurrent backbones on the fused cuDNN/MKL kernels of nn.LSTM / nn.GRU / nn.RNN."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.models.base import Backbone, Complexity, map_tensors
from pipeline.models.registry import register_backbone
from pipeline.schema import ModelConfig


@dataclass
class RNNConfig(ModelConfig):
    pass


class _FusedRNN(Backbone):
    rnn_class: type = nn.LSTM
    # O(n) sequential steps of a d×d matmul; one fixed-size state per step when decoding.
    complexity = Complexity("n·d²", 1, "n·d", 1, "d² (fixed state)", 0, "n")

    def __init__(self, cfg: RNNConfig, causal: bool):
        super().__init__(cfg, causal)
        bidirectional = not causal
        hidden = cfg.d_model // 2 if bidirectional else cfg.d_model
        self.rnn = self.rnn_class(cfg.d_model, hidden, num_layers=cfg.n_layers, batch_first=True,
                                  dropout=cfg.dropout if cfg.n_layers > 1 else 0.0,
                                  bidirectional=bidirectional)
        self.drop = nn.Dropout(cfg.dropout)
        if self.rnn_class is nn.LSTM:
            # Forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015): without it a stacked
            # LSTM LM sits at unigram perplexity for hundreds of steps before using its context.
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        bias[hidden:2 * hidden].fill_(1.0)

    def forward(self, x, mask=None):
        if self.causal or mask is None or bool(mask.all()):
            # Right padding cannot reach real positions of a left-to-right RNN.
            return self.drop(self.rnn(x)[0])
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.drop(out)

    def init_state(self, batch_size, device=None):
        if not self.causal:
            raise NotImplementedError("a bidirectional RNN has no left-to-right recurrent form")
        h = torch.zeros(self.rnn.num_layers, batch_size, self.rnn.hidden_size, device=device)
        return (h, torch.zeros_like(h)) if self.rnn_class is nn.LSTM else h

    def step(self, x_t, state):
        out, state = self.rnn(x_t.unsqueeze(1), state)
        return self.drop(out.squeeze(1)), state

    def reorder_state(self, state, index):
        # nn.LSTM / nn.GRU states are (layers, batch, hidden): batch is dim 1.
        return map_tensors(lambda t: t.index_select(1, index), state)


@register_backbone("lstm", RNNConfig)
class LSTM(_FusedRNN):
    rnn_class = nn.LSTM


@register_backbone("gru", RNNConfig)
class GRU(_FusedRNN):
    rnn_class = nn.GRU


@register_backbone("rnn", RNNConfig)
class ElmanRNN(_FusedRNN):
    """Elman (1990) network, tanh units."""

    rnn_class = nn.RNN
