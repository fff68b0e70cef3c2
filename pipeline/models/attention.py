"""Attention and feed-forward blocks, and positional encodings, for `stack` backbones and the
Transformer encoder–decoder (seq2seq.py).

Multi-head attention calls F.scaled_dot_product_attention, which picks the fused kernel available
(flash / memory-efficient on CUDA, a fused C++ kernel on CPU). Every block that calls it with
dropout takes the rate from `attention_dropout`, which keeps the fused kernel on CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import POSITION_WISE, Block, Complexity
from pipeline.models.registry import register_block


def rotary(x: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer) on (B, H, L, Dh), rotate-half form."""
    half = x.shape[-1] // 2
    freqs = 10000 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = (torch.arange(x.shape[-2], device=x.device, dtype=torch.float32) + offset)[:, None] * freqs
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def sinusoidal_positions(length: int, d_model: int, device=None, offset: int = 0) -> torch.Tensor:
    """Fixed sinusoids of Vaswani et al. (2017) for positions offset..offset+length-1, (L, D), scaled by
    position_scale(d_model). Only those rows: a decoding step builds one row, not the whole prefix
    (building offset+1 rows per step made sliding-window decoding O(n) per token, 0.4 -> 1.6 ms from
    1K to 4K context)."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe * position_scale(d_model)


def add_sinusoidal(x: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """x (B, L, D) plus the sinusoids of positions offset..offset+L-1."""
    return x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, offset).to(x.dtype)


def position_scale(d_model: int) -> float:
    """Token embeddings start with std d**-0.5, i.e. norm ~1 (tasks/base.py). Unscaled sinusoids have
    norm sqrt(d/2), so at d=144 position would outweigh token identity 8:1 and a model must first
    learn to grow its embeddings (PTB, RT and translation Transformers sat near chance for hundreds
    of steps). Scaled like the embeddings, both start at norm ~1."""
    return d_model ** -0.5


def attention_dropout(p: float, x: torch.Tensor, training: bool) -> float:
    """dropout_p for F.scaled_dot_product_attention on tensors like x: p in training, except on CPU.

    CPU's fused SDPA kernel has no dropout: any dropout_p > 0 sends SDPA to the math path, which
    materialises the n x n score matrix (issue #8: a Transformer train step at n=8192 took 16.3 s
    and 7.3 GB with dropout_p=0.2, 1.48 s and 174 MB without). So on CPU attention weights are not
    dropped; the residual dropout around every block still applies. On CUDA the fused kernels
    support dropout, so it stays.
    """
    return p if training and x.device.type != "cpu" else 0.0


def head_count(d_model: int, n_heads: int) -> int:
    """n_heads, checked to split d_model into whole heads (every multi-head block calls this)."""
    if d_model % n_heads:
        raise ValueError(f"model.d_model={d_model} is not divisible by model.n_heads={n_heads}")
    return n_heads


@register_block("attention")
class MultiHeadAttention(Block):
    # Vaswani et al. (2017), Table 1: every pair of positions, one step apart; decoding reads the KV cache.
    complexity = Complexity("n²·d", 2, "n²", 2, "n·d (KV cache)", 1, "1")
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d, self.n_heads = cfg.d_model, head_count(cfg.d_model, cfg.n_heads)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.use_rotary = cfg.positional == "rotary"
        self.dropout = cfg.dropout

    def forward(self, x, mask=None):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.use_rotary:
            q, k = rotary(q), rotary(k)
        attn_mask = None
        if not self.causal and mask is not None and not bool(mask.all()):
            attn_mask = mask[:, None, None, :]  # keys only: padded queries still see real keys
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=self.causal,
                                           dropout_p=attention_dropout(self.dropout, q, self.training))
        return self.out(y.transpose(1, 2).reshape(B, L, D))

    def init_state(self, batch_size, device=None):
        return {"k": None, "v": None}  # the KV cache grows by one position per step

    def step(self, x_t, state):
        B, D = x_t.shape
        q, k, v = self.qkv(x_t).view(B, 3, self.n_heads, 1, D // self.n_heads).unbind(1)
        offset = 0 if state["k"] is None else state["k"].shape[2]
        if self.use_rotary:
            q, k = rotary(q, offset), rotary(k, offset)
        if state["k"] is not None:
            k, v = torch.cat([state["k"], k], 2), torch.cat([state["v"], v], 2)
        y = F.scaled_dot_product_attention(q, k, v)  # one query sees every cached key: causal by construction
        return self.out(y.reshape(B, D)), {"k": k, "v": v}


@dataclass
class FeedForwardSettings:
    mult: int = 4  # hidden width = mult * d_model


@register_block("ffn", FeedForwardSettings)
class FeedForward(Block):
    position_wise = True
    complexity = POSITION_WISE

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        hidden = self.settings.mult * cfg.d_model
        self.up = nn.Linear(cfg.d_model, hidden)
        self.down = nn.Linear(hidden, cfg.d_model)

    def forward(self, x, mask=None):
        return self.down(F.gelu(self.up(x)))
