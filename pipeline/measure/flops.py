"""Forward FLOPs per token, counted by torch's FlopCounterMode on a real forward pass.

Counts matmuls, convolutions and attention (SDPA) as torch reports them; element-wise ops are not
counted. Recurrent kernels (nn.LSTM) are not seen by the counter, so they are added analytically.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _rnn_flops(module: nn.Module, tokens: int) -> int:
    total = 0
    for m in module.modules():
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[type(m)]
            dirs = 2 if m.bidirectional else 1
            for layer in range(m.num_layers):
                d_in = m.input_size if layer == 0 else m.hidden_size * dirs
                total += dirs * 2 * gates * m.hidden_size * (d_in + m.hidden_size) * tokens
    return total


def forward_flops_per_token(fn, module: nn.Module, tokens: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return (counter.get_total_flops() + _rnn_flops(module, tokens)) / tokens
