"""Linear-time blocks: each parallel (chunked / FFT) training form against a naive reference."""
import dataclasses

import pytest
import torch

from conftest import step_through
from pipeline.config import load
from pipeline.models.linear_attention import LinearAttention, causal_linear_attention, feature_map
from pipeline.models.rwkv import TimeMix, wkv_chunked
from pipeline.models import ssm
from pipeline.models.s4d import S4D
from pipeline.models.ssm import Mamba, selective_scan

L, CHUNK = 37, 8  # a length that is not a multiple of the chunk
TOL = dict(rtol=1e-4, atol=1e-5)


def sequential_scan(log_decay: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Reference: h_t = exp(log_decay_t) * h_{t-1} + u_t, one position at a time."""
    h, out = torch.zeros_like(u[:, 0]), []
    for a_t, u_t in zip(log_decay.unbind(1), u.unbind(1)):
        h = torch.exp(a_t) * h + u_t
        out.append(h)
    return torch.stack(out, 1)


def cfg():
    return load(["model=transformer", "model.d_model=16", "model.n_heads=2", "model.dropout=0.0",
                 "model.budget_params=null"]).model


def make(block_cls, causal):
    """The block with chunk_size=CHUNK and d_state=8, where its settings have them."""
    fields = {f.name for f in dataclasses.fields(block_cls.settings_class)}
    settings = block_cls.settings_class(**{k: v for k, v in {"chunk_size": CHUNK, "d_state": 8}.items() if k in fields})
    return block_cls(cfg(), causal, settings)


@pytest.mark.parametrize("kind", ["elu", "relu"])
def test_chunked_linear_attention_equals_quadratic(kind):
    torch.manual_seed(0)
    q, k, v = (feature_map(torch.randn(2, 3, L, 4, dtype=torch.float64), kind) for _ in range(3))
    v = torch.randn_like(v)
    A = (q @ k.transpose(-1, -2)).tril()  # the L × L form the chunks avoid
    reference = (A @ v) / (A.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(causal_linear_attention(q, k, v, CHUNK), reference, **TOL)


def test_linear_attention_bidirectional_ignores_padding():
    torch.manual_seed(0)
    block = make(LinearAttention, causal=False).eval()
    x = torch.randn(2, L, 16)
    mask = torch.ones(2, L, dtype=torch.bool)
    mask[0, 20:] = False
    noisy = torch.where(mask[..., None], x, 10 * torch.randn_like(x))
    with torch.no_grad():
        y, y_noisy, y_short = block(x, mask), block(noisy, mask), block(x[:1, :20])
    torch.testing.assert_close(y[mask], y_noisy[mask], **TOL)
    torch.testing.assert_close(y[0, :20], y_short[0], **TOL)


def test_selective_scan_equals_sequential_scan_even_with_fast_decay():
    torch.manual_seed(0)
    B, E, N = 2, 5, 3
    dt = torch.rand(B, L, E, dtype=torch.float64)
    dt[:, 10] = 100.0  # a near-total reset: exp(-cum) factorisations would overflow here
    A = -1 - torch.rand(E, N, dtype=torch.float64)
    x, Bm, Cm = torch.randn(B, L, E, dtype=torch.float64), *torch.randn(2, B, L, N, dtype=torch.float64)
    log_decay, u = dt.unsqueeze(-1) * A, (dt * x).unsqueeze(-1) * Bm.unsqueeze(2)  # the (B, L, E, N) form
    reference = (sequential_scan(log_decay, u) @ Cm.unsqueeze(-1)).squeeze(-1)
    for form in ("recurrent", "chunked"):
        torch.testing.assert_close(selective_scan(dt, A, x, Bm, Cm, CHUNK, form=form), reference, **TOL)
        args32 = [t.float() for t in (dt, A, x, Bm, Cm)]
        torch.testing.assert_close(selective_scan(*args32, CHUNK, form=form), reference.float(), **TOL)


def scan_inputs(B=2, E=5, N=3):
    dt = torch.rand(B, L, E, dtype=torch.float64)
    dt[:, 10] = 100.0  # a near-total reset
    dt[1, 30:] = 0.0  # right padding: identity steps
    A = -1 - torch.rand(E, N, dtype=torch.float64)
    return dt, A, torch.randn(B, L, E, dtype=torch.float64), *torch.randn(2, B, L, N, dtype=torch.float64)


def reference_scan(dt, A, x, Bm, Cm):
    u = (dt * x).unsqueeze(-1) * Bm.unsqueeze(2)
    return (sequential_scan(dt.unsqueeze(-1) * A, u) @ Cm.unsqueeze(-1)).squeeze(-1)


# 15 = N·E: one segment for the whole batch; one chunk (or position) per segment; 2 chunks per segment
@pytest.mark.parametrize("segment_elements", [ssm.SEGMENT_ELEMENTS, 1, 15 * CHUNK * 2 * 2])
@pytest.mark.parametrize("form,chunk", [("recurrent", CHUNK), ("chunked", 1), ("chunked", CHUNK), ("chunked", 64)])
def test_selective_scan_gradients_equal_autograd_through_sequential_scan(monkeypatch, segment_elements, form, chunk):
    monkeypatch.setattr(ssm, "SEGMENT_ELEMENTS", segment_elements)
    torch.manual_seed(0)
    inputs = [t.requires_grad_() for t in scan_inputs()]
    gy = torch.randn(2, L, 5, dtype=torch.float64)
    y = selective_scan(*inputs, chunk, form=form)
    reference = reference_scan(*inputs)
    torch.testing.assert_close(y, reference, **TOL)
    for g, g_ref in zip(torch.autograd.grad(y, inputs, gy), torch.autograd.grad(reference, inputs, gy)):
        torch.testing.assert_close(g, g_ref, **TOL)


@pytest.mark.parametrize("form", ["recurrent", "chunked"])
def test_selective_scan_gradcheck(form):
    torch.manual_seed(0)
    inputs = [t[:, :20].clone() if t.dim() == 3 else t for t in scan_inputs(E=3, N=2)]
    assert torch.autograd.gradcheck(lambda *t: selective_scan(*t, CHUNK, form=form), [t.requires_grad_() for t in inputs])


@pytest.mark.parametrize("block_cls", [Mamba, S4D, LinearAttention, TimeMix])
def test_block_forward_equals_step(block_cls):
    torch.manual_seed(0)
    block = make(block_cls, causal=True).eval()
    x = torch.randn(2, L, 16)
    with torch.no_grad():
        torch.testing.assert_close(step_through(block, x)[0], block(x), **TOL)


def test_mamba_bidirectional_reverse_scan_ignores_padding():
    torch.manual_seed(0)
    block = make(Mamba, causal=False).eval()
    x = torch.randn(2, L, 16)
    mask = torch.ones(2, L, dtype=torch.bool)
    mask[0, 15:] = False
    noisy = torch.where(mask[..., None], x, 10 * torch.randn_like(x))
    with torch.no_grad():
        y, y_noisy, y_short = block(x, mask), block(noisy, mask), block(x[:1, :15])
    torch.testing.assert_close(y[mask], y_noisy[mask], **TOL)
    torch.testing.assert_close(y[0, :15], y_short[0], **TOL)
    x2 = x.clone()
    x2[:, -1] += 1.0  # a later token changes earlier outputs: it really is bidirectional
    with torch.no_grad():
        assert not torch.allclose(block(x2)[:, 0], block(x)[:, 0])


def test_s4d_fft_convolution_equals_direct_convolution():
    torch.manual_seed(0)
    for causal in (True, False):
        block = make(S4D, causal=causal).eval()
        x = torch.randn(2, L, 16)
        with torch.no_grad():
            K = block.kernel(L)  # (dirs, H, L)
            u = x.transpose(1, 2)
            y = torch.zeros_like(u)
            for t in range(L):
                for s in range(L):
                    if s <= t:
                        y[..., t] += K[0, :, t - s] * u[..., s]
                    elif not causal:
                        y[..., t] += K[1, :, s - t - 1] * u[..., s]
            y = y + block.D[:, None] * u
            reference = block.out(torch.nn.functional.gelu(y.transpose(1, 2)))
            torch.testing.assert_close(block(x), reference, **TOL)


def test_fft_conv_backward_is_the_gradient_of_the_convolution():
    """FFTConv's hand-written backward (real FFTs only) against numerical gradients, for a causal
    kernel (H, L) and a circular one (H, 2L), both broadcast over the batch."""
    from pipeline.models.s4d import fft_conv

    torch.manual_seed(0)
    for k_len in (7, 14):
        u = torch.randn(3, 2, 7, dtype=torch.float64, requires_grad=True)
        k = torch.randn(2, k_len, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(fft_conv, (u, k))


def test_rwkv_chunked_wkv_equals_naive_and_is_stable():
    torch.manual_seed(0)
    B, D = 2, 6
    w = torch.tensor([0.01, 0.1, 1.0, 5.0, 20.0, 0.5], dtype=torch.float64)
    u = torch.randn(D, dtype=torch.float64)
    k, v = torch.randn(B, L, D, dtype=torch.float64) * 3, torch.randn(B, L, D, dtype=torch.float64)
    k[:, 5] += 60.0  # e^k alone would overflow fp32 without the running-max form
    t = torch.arange(L, dtype=torch.float64)
    lag = (t[:, None] - 1 - t[None, :])  # [t, i]
    x = k[:, None, :, :] - lag[None, :, :, None] * w  # (B, t, i, D)
    x = torch.where(torch.eye(L, dtype=torch.bool)[None, :, :, None], (u + k)[:, :, None, :], x)
    x = x.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril()[None, :, :, None], float("-inf"))
    weights = torch.softmax(x, dim=2)  # wkv is exactly a softmax over i of these exponents
    reference = (weights * v[:, None]).sum(2)
    torch.testing.assert_close(wkv_chunked(w, u, k, v, CHUNK), reference, **TOL)
    torch.testing.assert_close(wkv_chunked(w.float(), u.float(), k.float(), v.float(), CHUNK),
                               reference.float(), **TOL)


def test_rwkv_built_bidirectional_still_runs_causally():
    torch.manual_seed(0)
    causal = make(TimeMix, causal=True).eval()
    bidirectional = make(TimeMix, causal=False).eval()
    bidirectional.load_state_dict(causal.state_dict())
    x = torch.randn(2, L, 16)
    with torch.no_grad():
        torch.testing.assert_close(bidirectional(x), causal(x))
