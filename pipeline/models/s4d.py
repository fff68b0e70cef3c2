"""`s4d`: diagonal S4 (Gu et al. 2022, "On the Parameterization and Initialization of Diagonal State Space Models").

A linear recurrence h_t = Ā h_{t-1} + B̄ x_t whose Ā does not depend on the input, so it trains on whole
sequences as an FFT convolution with its kernel and generates with an O(1) `step`. The selective
(input-dependent) sibling, Mamba, is in ssm.py.
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
