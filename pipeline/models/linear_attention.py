"""Kernelised linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

softmax(q·k) is replaced by φ(q)·φ(k) with a positive feature map φ, so attention factorises:
    y_t = φ(q_t)ᵀ S_t / φ(q_t)ᵀ z_t,   S_t = Σ_{s<=t} φ(k_s) v_sᵀ,   z_t = Σ_{s<=t} φ(k_s)
which is an RNN with a (d_k × d_v) matrix state per head. Training uses the chunked form (as in
Hua et al. 2022, FLASH; Yang et al. 2023, GLA): quadratic masked attention inside chunks of
`chunk_size`, the running state S across chunks, so time is O(L·c·d + L·d²) and no L×L matrix exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.attention import head_count
from pipeline.models.base import Block, Complexity
from pipeline.models.registry import register_block
from pipeline.schema import ConfigError

EPS = 1e-6  # keeps the normaliser away from 0 when the relu feature map switches every key off


def feature_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "elu":
        return F.elu(x) + 1  # the paper's choice: positive, smooth, identity-like for x > 0
    if kind == "relu":
        return F.relu(x)
    raise ConfigError(f"model.blocks.linear_attention.feature_map='{kind}'; choose elu or relu")


def causal_linear_attention(q, k, v, chunk: int) -> torch.Tensor:
    """q, k: (B, H, L, dk) already feature-mapped, v: (B, H, L, dv) -> (B, H, L, dv)."""
    B, H, L, dk = q.shape
    pad = (-L) % chunk
    if pad:  # zero keys at the end contribute nothing and are cut off below
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = (L + pad) // chunk
    q, k, v = (t.reshape(B, H, n, chunk, t.shape[-1]) for t in (q, k, v))
    # State entering chunk j: sums over all earlier chunks (exclusive prefix sum over chunks).
    kv = k.transpose(-1, -2) @ v  # (B, H, n, dk, dv)
    S = torch.cat([torch.zeros_like(kv[:, :, :1]), kv[:, :, :-1]], 2).cumsum(2)
    ksum = k.sum(3)
    z = torch.cat([torch.zeros_like(ksum[:, :, :1]), ksum[:, :, :-1]], 2).cumsum(2)  # (B, H, n, dk)
    # Inside a chunk: masked quadratic form, c × c per chunk.
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    A = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0.0)
    num = A @ v + q @ S
    den = A.sum(-1) + (q * z.unsqueeze(3)).sum(-1)
    y = num / (den.unsqueeze(-1) + EPS)
    return y.reshape(B, H, n * chunk, -1)[:, :, :L]


def global_linear_attention(q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
    """Bidirectional: one global state; padded keys are zeroed so they are never summed."""
    if mask is not None:
        k = k * mask[:, None, :, None].to(k.dtype)
    S = k.transpose(-1, -2) @ v  # (B, H, dk, dv)
    z = k.sum(2, keepdim=True)  # (B, H, 1, dk)
    return (q @ S) / ((q * z).sum(-1, keepdim=True) + EPS)


@dataclass
class LinearAttentionSettings:
    feature_map: str = "elu"  # elu (elu+1) | relu
    chunk_size: int = 64  # positions per chunk of the causal (chunked) form


@register_block("linear_attention", LinearAttentionSettings)
class LinearAttention(Block):
    # Katharopoulos et al. (2020): a d×d running state instead of n×n scores.
    complexity = Complexity("n·d²", 1, "n·d", 1, "d² (fixed state)", 0, "n")
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d, self.n_heads = cfg.d_model, head_count(cfg.d_model, cfg.n_heads)
        feature_map(torch.zeros(1), self.settings.feature_map)  # fail at build time on a bad name
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def heads(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        return feature_map(q, self.settings.feature_map), feature_map(k, self.settings.feature_map), v

    def forward(self, x, mask=None):
        B, L, D = x.shape
        q, k, v = self.heads(x)
        if self.causal:  # right padding sits after every real token, so it cannot reach them
            y = causal_linear_attention(q, k, v, self.settings.chunk_size)
        else:
            y = global_linear_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(B, L, D))

    def init_state(self, batch_size, device=None):
        dh = self.cfg.d_model // self.n_heads
        return {"S": torch.zeros(batch_size, self.n_heads, dh, dh, device=device),
                "z": torch.zeros(batch_size, self.n_heads, dh, device=device)}

    def step(self, x_t, state):
        q, k, v = (t.squeeze(2) for t in self.heads(x_t.unsqueeze(1)))  # (B, H, dh) each
        S = state["S"] + k.unsqueeze(-1) * v.unsqueeze(-2)
        z = state["z"] + k
        y = (q.unsqueeze(-2) @ S).squeeze(-2) / ((q * z).sum(-1, keepdim=True) + EPS)
        return self.out(y.reshape(x_t.shape)), {"S": S, "z": z}
