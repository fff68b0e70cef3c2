"""Forward FLOPs per token, counted by torch's FlopCounterMode on a real forward pass.

Counts matmuls, convolutions and attention (SDPA); element-wise ops are not counted. Recurrent
kernels (nn.LSTM) are not seen by the counter, so they are added analytically.

Attention is counted analytically from q, k, v shapes, one formula for every fused SDPA kernel.
FlopCounterMode scores CPU's fused kernel (`_scaled_dot_product_flash_attention_for_cpu`) as 0, so
without this a Transformer's FLOPs/token would not grow with n; and torch's formulas for the CUDA
kernels ignore the causal mask. Conventions (`sdpa_flops`):
  - one call, q (B, H, Lq, Dh), k (B, H, Lk, Dh), v (B, H, Lk, Dv): 2·B·H·P·(Dh + Dv) for the
    QKᵀ and AV matmuls, P the (query, key) pairs computed;
  - P = Lq·Lk, except with is_causal, where only the unmasked pairs count (L(L+1)/2 when
    Lq = Lk): the fused kernels skip fully masked blocks, so the work done is about the unmasked
    half. An explicit attn_mask is not discounted: the kernels compute every pair it covers;
  - backward = 2x forward: the four gradient matmuls (dQ, dK, dV, dP), not the scores that a fused
    kernel recomputes from its log-sum-exp. That is also what autograd's matmuls count on the math
    path, so a train step counts the same whichever kernel ran.
SDPA itself is a composite op that the counter never sees: it sees the one fused kernel that ran
(counted here, once), or, on the math fallback, that path's bmm's (counted by torch, as executed:
all Lq·Lk pairs, since the math path computes the masked ones too). Nothing is counted twice.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

from pipeline.measure.eager_modes import without_dynamo_import

aten = torch.ops.aten

# Fused SDPA kernels (forward, backward) of every backend; their arguments are looked up by name.
SDPA_KERNELS = [
    (aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention_for_cpu_backward),
    (aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_flash_attention_backward),
    (aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_efficient_attention_backward),
    (aten._scaled_dot_product_cudnn_attention, aten._scaled_dot_product_cudnn_attention_backward),
    (aten._scaled_dot_product_fused_attention_overrideable,
     aten._scaled_dot_product_fused_attention_overrideable_backward),
]


def causal_pairs(lq: int, lk: int) -> int:
    """(query, key) pairs a causal mask leaves: query i sees keys 0..i (torch's top-left alignment)."""
    if lq <= lk:
        return lq * (lq + 1) // 2
    return lk * (lk + 1) // 2 + (lq - lk) * lk


def sdpa_flops(q_shape, k_shape, v_shape, is_causal: bool = False) -> int:
    """Forward FLOPs of one SDPA call (the module docstring has the conventions).

    Leading dims of q are batch and heads (k/v may have fewer heads: each query head still does its
    own dot products)."""
    *lead, lq, dh = q_shape
    lk, dv = k_shape[-2], v_shape[-1]
    pairs = causal_pairs(lq, lk) if is_causal else lq * lk
    return 2 * math.prod(lead) * pairs * (dh + dv)


def _sdpa_formula(packet, factor: int):
    """A FlopCounterMode formula for one SDPA kernel: factor x sdpa_flops of its q, k, v, is_causal."""
    names = [a.name for a in packet.default._schema.arguments]

    def count(*args, out_val=None, **kwargs) -> int:
        bound = {**dict(zip(names, args)), **kwargs}
        return factor * sdpa_flops(bound["query"].shape, bound["key"].shape, bound["value"].shape,
                                   bool(bound.get("is_causal", False)))

    count._get_raw = True  # FlopCounterMode then passes the tensors and flags, not only shapes
    return count


SDPA_FLOP_FORMULAS = {packet: formula for fwd, bwd in SDPA_KERNELS
                      for packet, formula in ((fwd, _sdpa_formula(fwd, 1)), (bwd, _sdpa_formula(bwd, 2)))}


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode with SDPA counted as above; use it for train steps (forward + backward) too."""
    return FlopCounterMode(display=False, custom_mapping=SDPA_FLOP_FORMULAS)


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
    with torch.no_grad(), without_dynamo_import(_FlopCounterMode), flop_counter() as counter:
        fn()
    return (counter.get_total_flops() + _rnn_flops(module, tokens)) / tokens
