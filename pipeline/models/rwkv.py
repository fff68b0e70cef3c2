"""RWKV-4 blocks (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era").

`rwkv_time_mix` mixes tokens through the WKV operator, a softmax-free attention whose weights decay
exponentially with distance, per channel:
    wkv_t = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u + k_t} v_t) / (same without v)
with decay w > 0 and a bonus u for the current token. `rwkv_channel_mix` is its feed-forward
(squared ReLU, receptance gate). Both read the previous token through a "token shift".

RWKV is causal only. Built bidirectional (for classification) the blocks still run left to right:
with right padding, pads come after every real token and cannot reach them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import POSITION_WISE, Block, Complexity
from pipeline.models.registry import register_block

NEG = -1e38  # the log-scale of an empty sum: finite, so that NEG - w never makes inf - inf


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, L, D) -> the previous token at each position, zeros at t = 0."""
    return F.pad(x, (0, 0, 1, -1))


def wkv_read(u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state) -> torch.Tensor:
    """WKV output at a token from the state (a, b, p) of all earlier tokens, plus the bonus e^{u + k} v."""
    a, b, p = state
    bonus = u + k
    m = torch.maximum(p, bonus)
    e_old, e_new = torch.exp(p - m), torch.exp(bonus - m)
    return (e_old * a + e_new * v) / (e_old * b + e_new)


def wkv_absorb(w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state):
    """The state after one more token: the old sums decay by e^{-w}, the token adds e^{k} v and e^{k}."""
    a, b, p = state
    decayed = p - w
    m = torch.maximum(decayed, k)
    e_old, e_new = torch.exp(decayed - m), torch.exp(k - m)
    return e_old * a + e_new * v, e_old * b + e_new, m


def wkv_step(w, u, k, v, state):
    """One token of WKV; state (a, b, p) covers all earlier tokens."""
    return wkv_read(u, k, v, state), wkv_absorb(w, k, v, state)


def wkv_chunked(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """WKV in parallel over chunks. w, u: (D,); k, v: (B, L, D) -> (B, L, D).

    Every sum is kept as (a, b, p) = (Σ e^{x - p} v, Σ e^{x - p}, p) with p the running maximum
    exponent, the stable form of the RWKV-4 kernels. All chunks advance together, one position per
    step: (1) each chunk's own final state, (2) a loop over L / chunk carries the state into each
    chunk, (3) each chunk is rerun from its incoming state with `wkv_step`'s arithmetic, emitting
    outputs. 2c + L/c sequential steps on (B, L/c, D) slices and O(L D) work; no c × c table.
    """
    B, L, D = k.shape
    pad = (-L) % chunk
    if pad:  # trailing positions only change the state after the last chunk, which is unused
        k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    n = (L + pad) // chunk
    # unbind, not indexing, into per-position views: its backward is one stack, not a zeroed copy per slice
    ks, vs = k.view(B, n, chunk, D).unbind(2), v.view(B, n, chunk, D).unbind(2)
    zero = k.new_zeros(B, n, D)
    # 1. Each chunk's own contribution to the state after its last token.
    local = (zero, zero, torch.full_like(zero, NEG))
    for k_i, v_i in zip(ks, vs):
        local = wkv_absorb(w, k_i, v_i, local)
    # 2. Carry (a, b, p) across chunks: the state entering chunk j.
    a, b, p = zero[:, 0], zero[:, 0], torch.full_like(zero[:, 0], NEG)
    incoming = []
    for a_j, b_j, q_j in zip(*(s.unbind(1) for s in local)):
        incoming.append((a, b, p))
        p_new = torch.maximum(p - chunk * w, q_j)
        e_old, e_new = torch.exp(p - chunk * w - p_new), torch.exp(q_j - p_new)
        a, b, p = e_old * a + e_new * a_j, e_old * b + e_new * b_j, p_new
    state = tuple(torch.stack(s, 1) for s in zip(*incoming))
    # 3. Rerun every chunk from its incoming state.
    out = []
    for k_i, v_i in zip(ks, vs):
        y, state = wkv_step(w, u, k_i, v_i, state)
        out.append(y)
    return torch.stack(out, 2).reshape(B, n * chunk, D)[:, :L]


def channel_ramp(d: int, power: float) -> torch.Tensor:
    return (torch.arange(d, dtype=torch.float32) / d) ** power


@dataclass
class TimeMixSettings:
    chunk_size: int = 64  # positions per chunk of the WKV scan


@register_block("rwkv_time_mix", TimeMixSettings)
class TimeMix(Block):
    # Peng et al. (2023): a per-channel decaying WKV state.
    complexity = Complexity("n·d²", 1, "n·d", 1, "d² (fixed state)", 0, "n")
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d = cfg.d_model
        # RWKV-4 init for a mid-depth layer (blocks do not know their depth): decays spread
        # log-uniformly-ish over channels, from slow (e^-5) to fast (e^3) forgetting.
        h = torch.arange(d, dtype=torch.float32) / max(d - 1, 1)
        self.time_decay = nn.Parameter(-5 + 8 * h ** 1.35)  # w = exp(time_decay) > 0
        self.time_first = nn.Parameter(torch.full((d,), 0.3).log() + 0.5 * ((torch.arange(d) + 1) % 3 - 1))
        self.mix_k = nn.Parameter(channel_ramp(d, 0.5))
        self.mix_v = nn.Parameter(channel_ramp(d, 0.5) + 0.15)
        self.mix_r = nn.Parameter(channel_ramp(d, 0.25))
        self.key, self.value, self.receptance = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.output = nn.Linear(d, d, bias=False)

    def project(self, x, prev):
        def mix(m):
            return x * m + prev * (1 - m)
        return self.key(mix(self.mix_k)), self.value(mix(self.mix_v)), torch.sigmoid(self.receptance(mix(self.mix_r)))

    def forward(self, x, mask=None):  # causal whatever self.causal says; see the module docstring
        k, v, r = self.project(x, token_shift(x))
        return self.output(r * wkv_chunked(torch.exp(self.time_decay), self.time_first, k, v, self.settings.chunk_size))

    def init_state(self, batch_size, device=None):
        z = torch.zeros(batch_size, self.cfg.d_model, device=device)
        return {"x": z, "wkv": (z, z, torch.full_like(z, NEG))}

    def step(self, x_t, state):
        k, v, r = self.project(x_t, state["x"])
        y, wkv = wkv_step(torch.exp(self.time_decay), self.time_first, k, v, state["wkv"])
        return self.output(r * y), {"x": x_t, "wkv": wkv}


@dataclass
class ChannelMixSettings:
    mult: int = 4  # hidden width = mult * d_model


@register_block("rwkv_channel_mix", ChannelMixSettings)
class ChannelMix(Block):
    complexity = POSITION_WISE
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d, hidden = cfg.d_model, self.settings.mult * cfg.d_model
        self.mix_k = nn.Parameter(channel_ramp(d, 0.5))
        self.mix_r = nn.Parameter(channel_ramp(d, 0.5))
        self.key = nn.Linear(d, hidden, bias=False)
        self.value = nn.Linear(hidden, d, bias=False)
        self.receptance = nn.Linear(d, d, bias=False)

    def mixed(self, x, prev):
        k = torch.relu(self.key(x * self.mix_k + prev * (1 - self.mix_k))) ** 2  # squared ReLU (Primer)
        return torch.sigmoid(self.receptance(x * self.mix_r + prev * (1 - self.mix_r))) * self.value(k)

    def forward(self, x, mask=None):
        return self.mixed(x, token_shift(x))

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.cfg.d_model, device=device)

    def step(self, x_t, state):
        return self.mixed(x_t, state), x_t
