"""State-space blocks: `mamba` (selective SSM, Gu & Dao 2023) and `s4d` (diagonal S4, Gu et al. 2022).

Both are linear recurrences h_t = Ā_t h_{t-1} + B̄_t x_t with a diagonal Ā, so they train in a
parallel form (a chunked scan for Mamba, whose Ā depends on the input; an FFT convolution for S4D,
whose Ā does not) and generate with an O(1) `step`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from pipeline.models.base import Block, Complexity, zero_padding
from pipeline.models.registry import register_block


# ----------------------------------------------------------------------------- selective scan
#
# Mamba-2's SSD form (Dao & Gu 2024, "Transformers are SSMs") turns a chunk into a masked (c × c)
# matmul because its decay is one scalar per head. Mamba-1's decay exp(Δ_t A) differs per (state n,
# channel e): the (c × c) kernel would be needed for every (n, e), c times the exps and the work of
# the scan itself, and exps of non-positive numbers only rule out factoring it as
# exp(A S_t)·exp(-A S_s). So the scan stays a recurrence, one exp and a few multiply-adds per
# (t, n, e), and what is tuned is memory traffic, which is what dominates on a CPU:
# - the (N, E) states exist only for one *segment* of the sequence at a time (about a hundred
#   (position, batch) rows, SEGMENT_ELEMENTS per buffer), so each segment's decays and states stay
#   in cache and their memory is reused segment after segment; nothing (B, L, N, E) is formed;
# - inside a segment, its chunks of `chunk_size` positions advance together, one position per op;
# - the backward is written out and recomputes the states (`_SelectiveScan`), instead of autograd
#   keeping every intermediate of the recurrence;
# - states are laid out (N, E), E innermost, so that the read-out Σ_n C_n h_n is a batched
#   (1 × N)(N × E) matmul.

SEGMENT_ELEMENTS = 2 ** 19  # per (rows, N, E) segment buffer: 2 MB fp32; the fastest of 2^17 .. 2^23


def _time_major(t: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, *rest) -> (length, B, *rest), zero-padded at the end: Δ = 0 and x = 0 are identity
    steps. Time-major, so that a run of positions is a contiguous slice for every batch row."""
    t = t.transpose(0, 1)
    if length > t.shape[0]:
        t = torch.cat([t, t.new_zeros(length - t.shape[0], *t.shape[1:])])
    return t.contiguous()


def _decay(dt: torch.Tensor, At: torch.Tensor) -> torch.Tensor:
    """exp(Δ A) (..., N, E) for Δ (..., E) >= 0 and At = Aᵀ (N, E) <= 0: factors in (0, 1], no overflow."""
    return (dt.unsqueeze(-2) * At).exp_()


def _outer(v: torch.Tensor, w: torch.Tensor, out=None) -> torch.Tensor:
    """(..., N), (..., E) -> (..., N, E)."""
    return torch.mul(v.unsqueeze(-1), w.unsqueeze(-2), out=out)


def _scan_(a, s, h0=None, totals=None, incoming=None, reverse=False):
    """The linear recurrence s_i <- a_i ⊙ s_{i-1} + s_i in place on chunked (k, c, ...) tensors, the
    k chunks back to back, starting from h0 (None: zero) before the first (reverse: s_i <- a_i ⊙
    s_{i+1} + s_i, right to left, h0 after the last). Returns the state entering each chunk (k, ...).

    All chunks advance together, one position per step: (1) each chunk's own final state from zero,
    (2) a loop over chunks carries the state into each, decayed across a whole chunk by `totals`
    (k, ...), the product of a over it, (3) every chunk is rerun from its incoming state. 2c + k
    steps, only products of decays <= 1. `incoming` from an earlier call skips (1) and (2).
    """
    pos = range(s.shape[1] - 1, -1, -1) if reverse else range(s.shape[1])
    if incoming is None:
        incoming = _incoming(a, s, pos, totals, h0, reverse)
    a_i, s_i = a.unbind(1), s.unbind(1)  # one view per position: cheaper than indexing each step
    prev = incoming
    for i in pos:
        prev = s_i[i].addcmul_(a_i[i], prev)
    return incoming


def _incoming(a, s, pos, totals, h0, reverse):
    """Steps (1) and (2) of `_scan_`: the state entering each chunk."""
    start = h0 if h0 is not None else s.new_zeros(s.shape[2:])
    if s.shape[0] == 1:
        return start.unsqueeze(0)
    feeders = slice(1, None) if reverse else slice(None, -1)  # the chunks whose final state enters another
    a_i, s_i = a[feeders].unbind(1), s[feeders].unbind(1)
    own = s_i[pos[0]]
    for i in pos[1:]:
        own = torch.addcmul(s_i[i], a_i[i], own)
    own, decay = own.unbind(0), totals[feeders].unbind(0)
    if reverse:
        own, decay = own[::-1], decay[::-1]
    states = [start]
    for own_j, decay_j in zip(own, decay):
        states.append(torch.addcmul(own_j, decay_j, states[-1]))
    return torch.stack(states[::-1] if reverse else states)


def _segments(length: int, batch: int, chunk: int, state_size: int):
    """(start, stop) positions of the segments: whole chunks, about SEGMENT_ELEMENTS / state_size
    (position, batch) rows each."""
    step = chunk * max(1, SEGMENT_ELEMENTS // (state_size * chunk * batch))
    return [(i, min(i + step, length)) for i in range(0, length, step)]


def _chunked(t: torch.Tensor, chunk: int) -> torch.Tensor:
    """(rows, ...) -> (rows / chunk, chunk, ...)."""
    return t.view(-1, chunk, *t.shape[1:])


def _read_out(h: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(rows, B, N, E), (rows, B, N) -> Σ_n v_n h_n (rows, B, E), as one batched (1 × N)(N × E) matmul."""
    E = h.shape[-1]
    return torch.bmm(v.reshape(-1, 1, v.shape[-1]), h.reshape(-1, *h.shape[-2:]), out=out.view(-1, 1, E))


def _states_again(d, u, Bt, At, entering, chunk):
    """A segment's decays and states, recomputed from the state entering each of its chunks. Both
    have one position more, so that shifted views replace copies: for d (G + 1, B, E) and u, Bt
    (G, B, ·), a_all[:-1] = a_t and a_all[1:] = a_{t+1}; h_all[:-1] = h_{t-1} and h_all[1:] = h_t."""
    a_all = _decay(d, At)
    h_all = torch.empty_like(a_all)
    h_all[0] = entering[0]
    _outer(Bt, u, out=h_all[1:])
    _scan_(_chunked(a_all[:-1], chunk), _chunked(h_all[1:], chunk), incoming=entering)
    return a_all, h_all


class _SelectiveScan(torch.autograd.Function):
    """`selective_scan`, segment by segment, with a hand-written backward that recomputes the
    states rather than keeping them, as Mamba's fused kernel does (Gu & Dao 2023, §3.3.2): saved
    are the inputs and the state entering each chunk, O(L (E + N) + (L / c) N E) memory."""

    @staticmethod
    def forward(ctx, dt, A, x, Bm, Cm, chunk):
        B, L, E = x.shape
        c = max(1, min(chunk, L))
        Lp = -(-L // c) * c
        d, u, Bt, Ct = (_time_major(t, Lp) for t in (dt, dt * x, Bm, Cm))
        At = A.t().contiguous()
        y, entering, h = d.new_empty(Lp, B, E), d.new_empty(Lp // c, B, *At.shape), None
        for start, stop in _segments(Lp, B, c, At.numel()):
            dc = _chunked(d[start:stop], c)
            s = _outer(_chunked(Bt[start:stop], c), _chunked(u[start:stop], c))  # Δ x B, becomes h
            entering[start // c:stop // c] = _scan_(_decay(dc, At), s, h0=h, totals=_decay(dc.sum(1), At))
            h = s[-1, -1].clone()
            _read_out(s, Ct[start:stop], out=y[start:stop])
        ctx.save_for_backward(dt, A, x, Bm, Cm, entering)
        ctx.chunk = c
        return y[:L].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        dt, A, x, Bm, Cm, entering = ctx.saved_tensors
        (B, L, E), N, c = x.shape, A.shape[1], ctx.chunk
        Lp = entering.shape[0] * c
        d = _time_major(dt, Lp + 1)  # Δ_Lp = 0: a_{t+1} exists for every t
        u, Bt, Ct, g_y = (_time_major(t, Lp) for t in (dt * x, Bm, Cm, gy))
        At = A.t().contiguous()
        gd, gu, gB, gC = d.new_empty(Lp, B, E), d.new_empty(Lp, B, E), d.new_empty(Lp, B, N), d.new_empty(Lp, B, N)
        gA, g = torch.zeros_like(At), None  # g: ∂loss/∂h at the position after the segment
        for start, stop in reversed(_segments(Lp, B, c, At.numel())):
            rows = slice(start, stop)
            a_all, h_all = _states_again(d[start:stop + 1], u[rows], Bt[rows], At, entering[start // c:stop // c], c)
            # ∂loss/∂h_t = C_t gy_t + a_{t+1} ⊙ ∂loss/∂h_{t+1}: the same recurrence, right to left
            gh = _outer(Ct[rows], g_y[rows])
            totals = _decay(_chunked(d[start + 1:stop + 1], c).sum(1), At)
            _scan_(_chunked(a_all[1:], c), _chunked(gh, c), h0=g, totals=totals, reverse=True)
            g = gh[0].clone()
            torch.linalg.vecdot(h_all[1:], g_y[rows].unsqueeze(-2), out=gC[rows])  # y_t = C_t · h_t
            torch.linalg.vecdot(gh, u[rows].unsqueeze(-2), out=gB[rows])  # Δ_t x_t B_t enters h_t
            _read_out(gh, Bt[rows], out=gu[rows])
            gz = gh.mul_(a_all[:-1]).mul_(h_all[:-1])  # ∂loss/∂(Δ_t A): the decay a_t met h_{t-1}
            gA += torch.mul(gz, d[rows].unsqueeze(-2), out=h_all[1:]).sum((0, 1))  # h is spent: reuse it
            torch.sum(gz.mul_(At), -2, out=gd[rows])
        gd, gu, gB, gC = (t[:L].transpose(0, 1) for t in (gd, gu, gB, gC))
        return gd + gu * x, gA.t(), gu * dt, gB, gC, None


def selective_scan(dt: torch.Tensor, A: torch.Tensor, x: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                   chunk: int) -> torch.Tensor:
    """y_t = C_t · h_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t, h_{-1} = 0 (Mamba's SSM, ZOH for A,
    Euler for B). Δ, x: (B, L, E); A: (E, N), <= 0; B, C: (B, L, N) -> y: (B, L, E)."""
    return _SelectiveScan.apply(dt, A, x, Bm, Cm, chunk)


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


@dataclass
class MambaSettings:
    d_state: int = 16  # N: state size per channel
    expand: int = 2  # inner width = expand * d_model
    conv_kernel: int = 4  # short causal convolution before the scan
    chunk_size: int = 64  # positions per chunk of the selective scan


@register_block("mamba", MambaSettings)
class Mamba(Block):
    # Gu & Dao (2023): a selective scan, linear in n; decoding carries a fixed (E, N) state.
    complexity = Complexity("n·d·N", 1, "n·d", 1, "d·N (fixed state)", 0, "n")
    """Mamba mixer: in-proj to (x, z), SSM branch on x, gated by SiLU(z), out-proj.

    Bidirectional (for classification), as in Vision Mamba (Zhu et al. 2024): a second conv + SSM
    with its own parameters reads the reversed sequence, sharing the in/out projections; the two
    outputs are summed. With right padding the reversed sequence starts with pads; they are zeroed
    before the conv and get Δ = 0, so the state is still exactly zero when the first real token arrives.
    """

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        s = self.settings
        d, inner = cfg.d_model, s.expand * cfg.d_model
        dt_rank = math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        self.fwd = SelectiveSSM(inner, s.d_state, dt_rank, s.conv_kernel)
        self.bwd = None if causal else SelectiveSSM(inner, s.d_state, dt_rank, s.conv_kernel)
        self.out_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x, mask=None):
        xs, z = self.in_proj(x).chunk(2, -1)
        y = self.fwd(xs, mask, self.settings.chunk_size)
        if self.bwd is not None:
            flipped = None if mask is None else mask.flip(1)
            y = y + self.bwd(xs.flip(1), flipped, self.settings.chunk_size).flip(1)
        return self.out_proj(y * F.silu(z))

    def init_state(self, batch_size, device=None):
        s = self.settings
        inner = s.expand * self.cfg.d_model
        return {"conv": torch.zeros(batch_size, s.conv_kernel - 1, inner, device=device),
                "h": torch.zeros(batch_size, inner, s.d_state, device=device)}

    def step(self, x_t, state):
        xs, z = self.in_proj(x_t).chunk(2, -1)
        y, state = self.fwd.step(xs, state)
        return self.out_proj(y * F.silu(z)), state


# ----------------------------------------------------------------------------- S4D

class FFTConv(torch.autograd.Function):
    """y = irfft(rfft(u) · rfft(k))[:L] at FFT size 2L, with a backward made of real FFTs only.

    Autograd's own backward of rfft is a complex-to-complex FFT of the padded size: at L = 8192 it took
    two thirds of the block's backward and made S4D's train step 2x slower per token than at L = 1024.
    The gradients are correlations, so they reuse the saved spectra (G = rfft(g)):
        du = irfft(G · conj(K))[:L],   dk = Σ_batch irfft(G · conj(U))[:len(k)]
    """

    @staticmethod
    def forward(ctx, u, k):
        L = u.shape[-1]
        U, K = torch.fft.rfft(u, n=2 * L), torch.fft.rfft(k, n=2 * L)
        ctx.save_for_backward(U, K)
        ctx.k_shape = k.shape
        return torch.fft.irfft(U * K, n=2 * L)[..., :L]

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        U, K = ctx.saved_tensors
        L = g.shape[-1]
        G = torch.fft.rfft(g, n=2 * L)
        du = torch.fft.irfft(G * K.conj(), n=2 * L)[..., :L] if ctx.needs_input_grad[0] else None
        dk = None
        if ctx.needs_input_grad[1]:  # sum over the dims k was broadcast along, in the frequency domain
            spectrum = (G * U.conj()).sum_to_size(*ctx.k_shape[:-1], G.shape[-1])
            dk = torch.fft.irfft(spectrum, n=2 * L)[..., :ctx.k_shape[-1]]
        return du, dk


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """u (B, H, L), k (H, L) causal or (H, 2L) in circular layout (causal lags first, then negative
    lags) -> (B, H, L)."""
    return FFTConv.apply(u, k)


@dataclass
class S4DSettings:
    d_state: int = 16  # real state size per channel (d_state / 2 complex modes)


@register_block("s4d", S4DSettings)
class S4D(Block):
    # Gu et al. (2022): a long convolution by FFT, n log n; every output sees every earlier input.
    complexity = Complexity("n·log n·d", 1, "n·d", 1, "d·N (fixed state)", 0, "1")
    """S4D layer: per channel a diagonal complex SSM with B = 1, x' = Ax + u, y = 2 Re(C x) + D u.

    A = -exp(log_A_real) + i·A_imag with the S4D-Lin init A_n = -1/2 + iπn; ZOH discretisation
    with a learned per-channel step Δ. Training materialises the convolution kernel
    K_l = 2 Re(Σ_n C_n (e^{ΔA_n} - 1)/A_n · e^{ΔA_n l}) (a Vandermonde product) and convolves by FFT
    in O(L log L); `step` runs the same complex diagonal recurrence. Bidirectional, as in S4: a
    second C gives an anti-causal kernel (lags -1, -2, ...); pads are zeroed so they add nothing.
    """

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        # N complex modes stand for 2N real states (conjugate pairs)
        H, N = cfg.d_model, max(1, self.settings.d_state // 2)
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
