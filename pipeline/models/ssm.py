"""State-space blocks: `mamba` (selective SSM, Gu & Dao 2023) and `s4d` (diagonal S4, Gu et al. 2022).

Both are linear recurrences h_t = Ā_t h_{t-1} + B̄_t x_t with a diagonal Ā, so they train in a
parallel form (a chunked scan for Mamba, whose Ā depends on the input; an FFT convolution for S4D,
whose Ā does not) and generate with an O(1) `step`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import Block, zero_padding
from pipeline.models.registry import register_block


# ----------------------------------------------------------------------------- selective scan

def _chunked(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, L, *rest) -> (B, L / chunk, chunk, *rest), zero-padded at the end to whole chunks."""
    B, L = x.shape[:2]
    pad = (-L) % chunk
    if pad:  # Δ = 0 and x = 0: identity steps at the end, cut off by the caller
        x = torch.cat([x, x.new_zeros(B, pad, *x.shape[2:])], 1)
    return x.view(B, (L + pad) // chunk, chunk, *x.shape[2:])


def selective_scan(dt: torch.Tensor, A: torch.Tensor, x: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                   chunk: int) -> torch.Tensor:
    """y_t = C_t · h_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t, h_{-1} = 0 (Mamba's SSM, ZOH for A,
    Euler for B). Δ, x: (B, L, E); A: (E, N), <= 0; B, C: (B, L, N) -> y: (B, L, E).

    The sequence is cut into chunks and all chunks advance together, one position per step:
    (1) each chunk's own final state, (2) a loop over chunks carries the state into each, (3) each
    chunk is rerun from its incoming state, reading out y. 2c + L/c sequential steps on (B, L/c, E, N)
    slices, O(L) work, only products of decays <= 1 (nothing overflows however fast the decay), the
    same arithmetic as `step`. The (E, N) factors exp(Δ A) and Δ x B are formed one slice at a time,
    never as (B, L, E, N) tensors: the memory traffic, not the arithmetic, is what costs on a CPU.
    """
    L, E = x.shape[1:]
    # unbind, not indexing, into per-position views: its backward is one stack, not a zeroed copy per slice
    dts, xs, Bs = (_chunked(t, chunk).unbind(2) for t in (dt, dt * x, Bm))
    Cs = _chunked(Cm.unsqueeze(-1), chunk).unbind(2)

    def advance(h, i):  # h (B, n, E, N) -> the state one position later, in every chunk
        u = xs[i].unsqueeze(-1) * Bs[i].unsqueeze(-2)
        return u if h is None else torch.addcmul(u, torch.exp(dts[i].unsqueeze(-1) * A), h)

    # 1. Each chunk's own final state.
    h = None
    for i in range(chunk):
        h = advance(h, i)
    # 2. The state entering each chunk; across a whole chunk the state decays by exp(A Σ Δ).
    total = torch.exp(_chunked(dt, chunk).sum(2).unsqueeze(-1) * A)
    state, incoming = torch.zeros_like(h[:, 0]), []
    for total_j, h_j in zip(total.unbind(1), h.unbind(1)):
        incoming.append(state)
        state = torch.addcmul(h_j, total_j, state)
    # 3. Rerun every chunk from its incoming state.
    h, ys = torch.stack(incoming, 1), []
    for i in range(chunk):
        h = advance(h, i)
        ys.append((h @ Cs[i]).squeeze(-1))
    return torch.stack(ys, 2).reshape(x.shape[0], -1, E)[:, :L]


def sequential_scan(log_decay: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Reference for tests: h_t = exp(log_decay_t) * h_{t-1} + u_t, one position at a time."""
    h, out = torch.zeros_like(u[:, 0]), []
    for a_t, u_t in zip(log_decay.unbind(1), u.unbind(1)):
        h = torch.exp(a_t) * h + u_t
        out.append(h)
    return torch.stack(out, 1)


class SelectiveSSM(nn.Module):
    """One direction of Mamba's mixer: causal depthwise conv, SiLU, selective SSM with D skip."""

    def __init__(self, inner: int, d_state: int, dt_rank: int, conv_kernel: int):
        super().__init__()
        self.d_state, self.dt_rank, self.kernel = d_state, dt_rank, conv_kernel
        self.conv = nn.Conv1d(inner, inner, conv_kernel, groups=inner)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)  # input-dependent Δ, B, C
        self.dt_proj = nn.Linear(dt_rank, inner)
        # S4D-real init A_n = -(n + 1); Δ starts log-uniform in [1e-3, 1e-1] via the bias
        # (softplus⁻¹), as in the Mamba paper.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(inner))
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def inputs(self, xc: torch.Tensor):
        """xc: conv output (..., E) -> Δ (..., E), B and C (..., N), A (E, N)."""
        dt, Bm, Cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], -1)
        return F.softplus(self.dt_proj(dt)), Bm, Cm, -torch.exp(self.A_log)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, chunk: int) -> torch.Tensor:
        x = zero_padding(x, mask)  # pads enter the conv as the zeros it pads with
        xc = F.silu(self.conv(F.pad(x.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2))
        dt, Bm, Cm, A = self.inputs(xc)
        if mask is not None:  # Δ = 0 makes a pad an identity step: no decay, no input
            dt = dt * mask.unsqueeze(-1).to(dt.dtype)
        return selective_scan(dt, A, xc, Bm, Cm, chunk) + self.D * xc

    def step(self, x_t, state):
        window = torch.cat([state["conv"], x_t.unsqueeze(1)], 1)  # (B, K, E): the last K inputs
        xc = F.silu(torch.einsum("bke,ek->be", window, self.conv.weight[:, 0]) + self.conv.bias)
        dt, Bm, Cm, A = self.inputs(xc)
        h = torch.exp(dt.unsqueeze(-1) * A) * state["h"] + (dt * xc).unsqueeze(-1) * Bm.unsqueeze(1)
        y = (h @ Cm.unsqueeze(-1)).squeeze(-1) + self.D * xc
        return y, {"conv": window[:, 1:], "h": h}


@register_block("mamba")
class Mamba(Block):
    """Mamba mixer: in-proj to (x, z), SSM branch on x, gated by SiLU(z), out-proj.

    Bidirectional (for classification), as in Vision Mamba (Zhu et al. 2024): a second conv + SSM
    with its own parameters reads the reversed sequence, sharing the in/out projections; the two
    outputs are summed. With right padding the reversed sequence starts with pads; they are zeroed
    before the conv and get Δ = 0, so the state is still exactly zero when the first real token arrives.
    """

    def __init__(self, cfg, causal):
        super().__init__(cfg, causal)
        d, inner = cfg.d_model, cfg.expand * cfg.d_model
        dt_rank = math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        self.fwd = SelectiveSSM(inner, cfg.d_state, dt_rank, cfg.conv_kernel)
        self.bwd = None if causal else SelectiveSSM(inner, cfg.d_state, dt_rank, cfg.conv_kernel)
        self.out_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x, mask=None):
        xs, z = self.in_proj(x).chunk(2, -1)
        y = self.fwd(xs, mask, self.cfg.chunk_size)
        if self.bwd is not None:
            flipped = None if mask is None else mask.flip(1)
            y = y + self.bwd(xs.flip(1), flipped, self.cfg.chunk_size).flip(1)
        return self.out_proj(y * F.silu(z))

    def init_state(self, batch_size, device=None):
        inner = self.cfg.expand * self.cfg.d_model
        return {"conv": torch.zeros(batch_size, self.cfg.conv_kernel - 1, inner, device=device),
                "h": torch.zeros(batch_size, inner, self.cfg.d_state, device=device)}

    def step(self, x_t, state):
        xs, z = self.in_proj(x_t).chunk(2, -1)
        y, state = self.fwd.step(xs, state)
        return self.out_proj(y * F.silu(z)), state


# ----------------------------------------------------------------------------- S4D

def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """u (B, H, L), k (H, 2L) in circular layout (causal lags first, then negative lags) -> (B, H, L)."""
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]


@register_block("s4d")
class S4D(Block):
    """S4D layer: per channel a diagonal complex SSM with B = 1, x' = Ax + u, y = 2 Re(C x) + D u.

    A = -exp(log_A_real) + i·A_imag with the S4D-Lin init A_n = -1/2 + iπn; ZOH discretisation
    with a learned per-channel step Δ. Training materialises the convolution kernel
    K_l = 2 Re(Σ_n C_n (e^{ΔA_n} - 1)/A_n · e^{ΔA_n l}) (a Vandermonde product) and convolves by FFT
    in O(L log L); `step` runs the same complex diagonal recurrence. Bidirectional, as in S4: a
    second C gives an anti-causal kernel (lags -1, -2, ...); pads are zeroed so they add nothing.
    """

    def __init__(self, cfg, causal):
        super().__init__(cfg, causal)
        H, N = cfg.d_model, max(1, cfg.d_state // 2)  # N complex modes stand for 2N real states (conjugate pairs)
        log_dt = torch.rand(H) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.full((H, N), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(N, dtype=torch.float32).repeat(H, 1))
        self.C = nn.Parameter(torch.randn(1 if causal else 2, H, N, 2) * math.sqrt(0.5))  # (re, im)
        self.D = nn.Parameter(torch.randn(H))
        self.out = nn.Linear(H, H)

    def discretize(self):
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = A * torch.exp(self.log_dt).unsqueeze(-1)
        return dtA, (torch.exp(dtA) - 1) / A  # log Ā = ΔA, and B̄ = (e^{ΔA} - 1)/A (ZOH, B = 1)

    def kernel(self, length: int) -> torch.Tensor:
        """K (dirs, H, length). The Vandermonde matrix z^l, z = e^{ΔA}, is split as z^{i + c·j} =
        z^i · z^{c·j}: c + L/c complex exponentials per mode instead of L, and the rest is a matmul."""
        dtA, dB = self.discretize()
        C = torch.view_as_complex(self.C) * dB  # (dirs, H, N)
        c = math.isqrt(max(length - 1, 0)) + 1  # c >= sqrt(L)
        n = -(-length // c)
        inner = torch.exp(dtA.unsqueeze(-1) * torch.arange(c, device=dtA.device))  # (H, N, c)
        outer = torch.exp(dtA.unsqueeze(-1) * (c * torch.arange(n, device=dtA.device)))  # (H, N, n)
        K = torch.einsum("dhni,hnj->dhji", C.unsqueeze(-1) * inner, outer)  # (dirs, H, n, c)
        return 2 * K.reshape(*K.shape[:2], n * c)[..., :length].real

    def forward(self, x, mask=None):
        u = zero_padding(x, mask).transpose(1, 2)  # (B, H, L)
        L = u.shape[-1]
        K = self.kernel(L)
        if self.causal:
            k = K[0]
        else:  # lag l >= 0 from K[0]; lag -l (l >= 1) from K[1][l - 1], at the circular tail
            k = F.pad(K[0], (0, L)) + F.pad(K[1].flip(-1), (L, 0))
        y = fft_conv(u, k) + self.D.unsqueeze(-1) * u
        return self.out(F.gelu(y.transpose(1, 2)))

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, *self.log_A_real.shape, dtype=torch.complex64, device=device)

    def step(self, x_t, state):
        dtA, dB = self.discretize()
        state = torch.exp(dtA) * state + dB * x_t.unsqueeze(-1)
        y = 2 * (torch.view_as_complex(self.C[0]) * state).sum(-1).real + self.D * x_t
        return self.out(F.gelu(y)), state
