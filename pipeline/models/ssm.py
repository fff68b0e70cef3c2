"""`mamba`: the selective state-space block (Gu & Dao 2023).

A linear recurrence h_t = Ā_t h_{t-1} + B̄_t x_t with a diagonal Ā that depends on the input, so it trains
on whole sequences with a scan and generates with an O(1) `step`. Its LTI sibling S4D is in s4d.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from pipeline.models import ssm_cpu
from pipeline.models.base import Block, Complexity, zero_padding
from pipeline.models.registry import register_block


# ----------------------------------------------------------------------------- selective scan
# Mamba-2's SSD form (Dao & Gu 2024, "Transformers are SSMs") turns a chunk into a masked (c × c)
# matmul because its decay is one scalar per head. Mamba-1's decay exp(Δ_t A) differs per (state n,
# channel e): the (c × c) kernel would be needed for every (n, e), c times the exps and the work of
# the scan itself, and exps of non-positive numbers only rule out factoring it as
# exp(A S_t)·exp(-A S_s). So the scan stays a recurrence, one exp and a few multiply-adds per
# (t, n, e), and what is tuned is memory traffic and the passes over the states. The (N, E) states
# exist for one *segment* of positions × batch rows at a time, in buffers of about SEGMENT_ELEMENTS
# reused segment after segment (in cache); nothing (B, L, N, E) is formed. A segment's k chunks advance
# together, one position per op (`_scan_`), at the cost of a second pass over the states when k > 1:
# on a CPU, where an op on several thousand floats costs little more than its arithmetic, a segment is
# one chunk (form "recurrent"), and a large batch is split into groups of rows so that a segment spans
# MIN_SEGMENT positions still. States are laid out (N, E), E innermost, so that the read-out
# Σ_n C_n h_n is a batched (1 × N)(N × E) matmul.
# On a CPU in fp32 the default is neither form but ssm_cpu's fused C++ kernel, which holds the states of
# a few channels in cache for the whole sequence and so skips these passes over memory; the forms here
# are its fallback (no compiler) and the other devices' path, and compute the same.

SEGMENT_ELEMENTS = 2 ** 19  # per (rows, N, E) segment buffer: 2 MB fp32; the fastest of 2^17 .. 2^23
MIN_SEGMENT = 8  # recurrent form: positions per segment at least, when the batch is split into groups
MIN_STEP_ELEMENTS = 2 ** 13  # recurrent form on CPUs from this many floats per position op: below, chunks


def _time_major(t: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, *rest) -> (length, B, *rest), zero-padded at the end: Δ = 0 and x = 0 are identity
    steps. Time-major, so that a run of positions is a contiguous slice for every batch row."""
    t = t.transpose(0, 1)
    if length > t.shape[0]:
        t = torch.cat([t, t.new_zeros(length - t.shape[0], *t.shape[1:])])
    return t.contiguous()


def _decay(dt: torch.Tensor, At2: torch.Tensor, out=None) -> torch.Tensor:
    """exp(Δ A) (..., N, E) for Δ (..., E) >= 0 and A <= 0: factors in (0, 1], no overflow. As
    exp2(Δ · Aᵀ log2 e), At2 = Aᵀ log2 e (N, E): on CPUs exp2 costs about half of exp."""
    return torch.mul(dt.unsqueeze(-2), At2, out=out).exp2_()


def _outer(v: torch.Tensor, w: torch.Tensor, out=None) -> torch.Tensor:
    """(..., N), (..., E) -> (..., N, E)."""
    return torch.mul(v.unsqueeze(-1), w.unsqueeze(-2), out=out)


def _scan_(a, s, h0=None, totals=None, incoming=None, reverse=False):
    """The linear recurrence s_i <- a_i ⊙ s_{i-1} + s_i in place on chunked (k, c, ...) tensors, the k
    chunks back to back, from h0 (None: zero) before the first (reverse: s_i <- a_i ⊙ s_{i+1} + s_i,
    right to left, h0 after the last). Returns the state entering each chunk (k, ...). All chunks
    advance together, one position per step: (1) each chunk's own final state from zero, (2) a loop
    over chunks carries the state into each, decayed across a whole chunk by `totals` (k, ...), the
    product of a over it, (3) every chunk is rerun from its incoming state: 2c + k steps, only products
    of decays <= 1. `incoming` from an earlier call skips (1) and (2)."""
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


def _chunked(t: torch.Tensor, chunk: int) -> torch.Tensor:
    """(rows, ...) -> (rows / chunk, chunk, ...)."""
    return t.view(-1, chunk, *t.shape[1:])


def _plan(batch: int, length: int, state_size: int, chunk: int | None):
    """Batch groups [(b0, b1)], positions per chunk and per segment. chunk None (recurrent form): groups
    and segments of about equal size, one chunk per segment; else the whole batch, whole chunks."""
    rows = max(1, SEGMENT_ELEMENTS // state_size)  # (position, batch row) pairs per segment buffer
    if chunk is not None:
        chunk = max(1, min(chunk, length))
        return [(0, batch)], chunk, chunk * max(1, rows // (chunk * batch))
    n_groups = -(-batch // max(1, min(batch, rows // min(length, MIN_SEGMENT))))
    bounds = [round(i * batch / n_groups) for i in range(n_groups + 1)]
    groups = list(zip(bounds[:-1], bounds[1:]))
    n_segments = -(-length // max(1, rows // max(b - a for a, b in groups)))
    chunk = -(-length // n_segments)
    return groups, chunk, chunk


def _view(flat: torch.Tensor, *shape: int) -> torch.Tensor:
    """A view of a flat buffer that every segment reuses: it stays in cache, where a fresh one is cold."""
    return flat[:math.prod(shape)].view(shape)


def _read_out(h: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(rows, B, N, E), (rows, B, N) -> Σ_n v_n h_n (rows, B, E), as one batched (1 × N)(N × E) matmul."""
    E = h.shape[-1]
    return torch.bmm(v.reshape(-1, 1, v.shape[-1]), h.reshape(-1, *h.shape[-2:]), out=out.view(-1, 1, E))


class _SelectiveScan(torch.autograd.Function):
    """`selective_scan` with a hand-written backward that recomputes the states rather than keeping them,
    as Mamba's fused kernel does (Gu & Dao 2023, §3.3.2): it saves the inputs and each chunk's entering
    state, O(L (E + N) + (L / c) N E)."""

    @staticmethod
    def forward(ctx, dt, A, x, Bm, Cm, chunk):
        (B, L, E), N = x.shape, A.shape[1]
        At2 = A.t().contiguous() * math.log2(math.e)
        groups, c, seg = _plan(B, L, N * E, chunk)
        Lp = -(-L // c) * c
        buf_a, buf_h = x.new_empty(2, min(seg, Lp) * max(b - a for a, b in groups) * N * E)
        y, entering = x.new_empty(B, L, E), x.new_empty(Lp // c, B, N, E)
        u_all = dt * x
        for b0, b1 in groups:
            d, u, Bt, Ct = (_time_major(t[b0:b1], Lp) for t in (dt, u_all, Bm, Cm))
            y_g, h = d.new_empty(Lp, b1 - b0, E), None
            for start in range(0, Lp, seg):
                rows, shape = slice(start, min(start + seg, Lp)), (min(seg, Lp - start), b1 - b0, N, E)
                totals = _decay(_chunked(d[rows], c).sum(1), At2) if seg > c else None
                a = _decay(d[rows], At2, out=_view(buf_a, *shape))
                s = _outer(Bt[rows], u[rows], out=_view(buf_h, *shape))  # Δ x B, becomes h
                entering[start // c:rows.stop // c, b0:b1] = _scan_(_chunked(a, c), _chunked(s, c), h, totals)
                h = s[-1].clone()
                _read_out(s, Ct[rows], out=y_g[rows])
            y[b0:b1] = y_g[:L].transpose(0, 1)
        ctx.save_for_backward(dt, A, x, Bm, Cm, entering)
        ctx.plan = groups, c, seg, Lp
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        dt, A, x, Bm, Cm, entering = ctx.saved_tensors
        (B, L, E), N, (groups, c, seg, Lp) = x.shape, A.shape[1], ctx.plan
        At = A.t().contiguous()
        At2 = At * math.log2(math.e)
        buf_a, buf_h, buf_gh, buf_tmp = x.new_empty(4, (min(seg, Lp) + 1) * max(b - a for a, b in groups) * N * E)
        u_all = dt * x
        gd, gu, gB, gC = x.new_empty(B, L, E), x.new_empty(B, L, E), x.new_empty(B, L, N), x.new_empty(B, L, N)
        gA = torch.zeros_like(At)
        for b0, b1 in groups:
            d = _time_major(dt[b0:b1], Lp + 1)  # Δ_Lp = 0: a_{t+1} exists for every t
            u, Bt, Ct, g_y = (_time_major(t[b0:b1], Lp) for t in (u_all, Bm, Cm, gy))
            g_d, g_u, g_B, g_C = parts = [d.new_empty(Lp, b1 - b0, n) for n in (E, E, N, N)]
            g = None  # ∂loss/∂h at the position after the segment
            for start in reversed(range(0, Lp, seg)):
                rows, n = slice(start, min(start + seg, Lp)), min(seg, Lp - start)
                # decays and states again, one position longer: [:-1] holds a_t, h_{t-1}; [1:] a_{t+1}, h_t
                a_all = _decay(d[start:rows.stop + 1], At2, out=_view(buf_a, n + 1, b1 - b0, N, E))
                h_all = _view(buf_h, n + 1, b1 - b0, N, E)
                h_all[0] = entering[start // c, b0:b1]
                _outer(Bt[rows], u[rows], out=h_all[1:])
                incoming = entering[start // c:rows.stop // c, b0:b1]
                _scan_(_chunked(a_all[:-1], c), _chunked(h_all[1:], c), incoming=incoming)
                # ∂loss/∂h_t = C_t gy_t + a_{t+1} ⊙ ∂loss/∂h_{t+1}: the same recurrence, right to left
                gh = _outer(Ct[rows], g_y[rows], out=_view(buf_gh, n, b1 - b0, N, E))
                totals = _decay(_chunked(d[start + 1:rows.stop + 1], c).sum(1), At2) if seg > c else None
                _scan_(_chunked(a_all[1:], c), _chunked(gh, c), h0=g, totals=totals, reverse=True)
                g = gh[0].clone()
                tmp = _view(buf_tmp, n, b1 - b0, N, E)  # products to sum (vecdot would allocate them)
                torch.sum(torch.mul(h_all[1:], g_y[rows].unsqueeze(-2), out=tmp), -1, out=g_C[rows])  # y = C · h
                torch.sum(torch.mul(gh, u[rows].unsqueeze(-2), out=tmp), -1, out=g_B[rows])  # Δ x B enters h
                _read_out(gh, Bt[rows], out=g_u[rows])
                gz = gh.mul_(a_all[:-1]).mul_(h_all[:-1])  # ∂loss/∂(Δ_t A): the decay a_t met h_{t-1}
                gA += torch.mul(gz, d[rows].unsqueeze(-2), out=tmp).sum((0, 1))
                torch.sum(gz.mul_(At), -2, out=g_d[rows])
            for full, part in zip((gd, gu, gB, gC), parts):
                full[b0:b1] = part[:L].transpose(0, 1)
        return gd + gu * x, gA.t(), gu * dt, gB, gC, None


def selective_scan(dt: torch.Tensor, A: torch.Tensor, x: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                   chunk: int, form: str | None = None, D: torch.Tensor | None = None, softplus: bool = False,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """y_t = C_t · h_t (+ D x_t, D (E,) given) with h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t, h_{-1} = 0
    (Mamba's SSM, ZOH for A, Euler for B). Δ, x: (B, L, E); A: (E, N), <= 0; B, C: (B, L, N) -> y: (B, L, E).
    softplus: Δ is given before its softplus; mask (B, L): False at pads, whose Δ is then 0 (identity steps).

    form: "fused" (ssm_cpu: the C++ kernel; fp32 CPU tensors), "recurrent" (one chunk per segment, batch
    groups) or "chunked" (`chunk` positions per chunk). None: fused on a CPU in fp32 where the kernel
    builds; else recurrent on a CPU when a position's states are MIN_STEP_ELEMENTS floats (forward +
    backward, 4096 tokens, vs chunks of 16: 2.1x at n = 64, 1.1x at batch 2; 0.87x at batch 1), else chunked."""
    tensors = [t for t in (dt, A, x, Bm, Cm, D) if t is not None]
    cpu = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and (
        mask is None or mask.device.type == "cpu")
    if form is None and cpu and ssm_cpu.available():
        form = "fused"
    steps = cpu and x.shape[0] * x.shape[2] * A.shape[1] >= MIN_STEP_ELEMENTS
    form = form or ("recurrent" if steps else "chunked")
    if form not in ("fused", "recurrent", "chunked"):
        raise ValueError(f"selective_scan: form must be 'fused', 'recurrent' or 'chunked', not {form!r}")
    if form == "fused":
        return ssm_cpu.FusedScan.apply(dt, A, x, Bm, Cm, D, softplus, mask)
    dt = F.softplus(dt) if softplus else dt
    dt = dt if mask is None else dt * mask.unsqueeze(-1).to(dt.dtype)
    y = _SelectiveScan.apply(dt, A, x, Bm, Cm, chunk if form == "chunked" else None)
    return y if D is None else torch.addcmul(y, D, x)


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

    def inputs(self, xc: torch.Tensor, softplus: bool = True):
        """xc: conv output (..., E) -> Δ (..., E; before its softplus unless `softplus`), B and C (..., N),
        A (E, N)."""
        dt, Bm, Cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], -1)
        dt = self.dt_proj(dt)
        return F.softplus(dt) if softplus else dt, Bm, Cm, -torch.exp(self.A_log)

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise causal conv of (B, L, E) as K shifted multiply-adds. As fast as Conv1d, but with
        no (B, E, L) transposes its output is contiguous for the ops after it (train step 7-13% faster)."""
        K, L = self.kernel, x.shape[1]
        xp, w = F.pad(x, (0, 0, K - 1, 0)), self.conv.weight[:, 0]  # (B, K - 1 + L, E), (E, K)
        y = self.conv.bias
        for k in range(K):
            y = torch.addcmul(y, xp[:, k:k + L], w[:, k])
        return y

    def conv_silu(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU of the causal conv: fused on a CPU where ssm_cpu's kernel builds (one pass each way)."""
        weight, bias = self.conv.weight[:, 0], self.conv.bias
        if ssm_cpu.conv_fits(x, weight, bias):
            return ssm_cpu.ConvSiLU.apply(x, weight, bias)
        return F.silu(self.causal_conv(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, chunk: int) -> torch.Tensor:
        xc = self.conv_silu(zero_padding(x, mask))  # pads enter the conv as the zeros it pads with
        dt, Bm, Cm, A = self.inputs(xc, softplus=False)  # the scan applies it (in the fused kernel)
        # the mask gives pads Δ = 0: an identity step, no decay, no input
        return selective_scan(dt, A, xc, Bm, Cm, chunk, D=self.D, softplus=True, mask=mask)

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
    chunk_size: int = 64  # positions per chunk of the chunked selective scan (off-CPU; selective_scan)


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
        return self.out_proj(ssm_cpu.Gate.apply(y, z) if ssm_cpu.gate_fits(y, z) else y * F.silu(z))

    def init_state(self, batch_size, device=None):
        s = self.settings
        inner = s.expand * self.cfg.d_model
        return {"conv": torch.zeros(batch_size, s.conv_kernel - 1, inner, device=device),
                "h": torch.zeros(batch_size, inner, s.d_state, device=device)}

    def step(self, x_t, state):
        xs, z = self.in_proj(x_t).chunk(2, -1)
        y, state = self.fwd.step(xs, state)
        return self.out_proj(y * F.silu(z)), state
