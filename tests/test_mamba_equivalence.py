"""Mamba's CPU fast paths against the paths they replaced and against an external implementation.

- fused vs recurrent: the C++ scan (pipeline/models/ssm_cpu.py) against the PyTorch one, outputs and
  every gradient, at widths and lengths that exercise its channel blocks, padding and chunk checkpoints;
  its conv + SiLU and output gate against the PyTorch ops;
- old vs new: the fused and the recurrent form of the scan and the shift-and-add causal conv (pipeline/models/ssm.py)
  against the chunked form and Conv1d that the block used before, outputs and every gradient, in fp32,
  with padding masks, causal and bidirectional;
- mambapy (Torres-Leguet's mamba.py, the pure-PyTorch Mamba of the `transformers` library): our block
  with its weights copied into mambapy's MambaBlock (causal) and VMambaBlock (bidirectional, summed
  directions, as ours), outputs and gradients; with padding, each row against mambapy on the row cut
  to its length.
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import load
from pipeline.models import ssm, ssm_cpu
from pipeline.models.base import zero_padding
from pipeline.models.ssm import Mamba, selective_scan

B, L, D_MODEL = 3, 45, 16
LENGTHS = (45, 30, 7)  # right padding: rows 1 and 2 end early


def block(causal: bool, chunk: int = 8) -> Mamba:
    cfg = load(["model=mamba", f"model.d_model={D_MODEL}", "model.dropout=0.0", "model.budget_params=null"]).model
    settings = dataclasses.replace(ssm.MambaSettings(), d_state=8, chunk_size=chunk)
    torch.manual_seed(0)
    m = Mamba(cfg, causal, settings)
    with torch.no_grad():  # decays and steps from slow to near-total resets, not just the initial ones
        for s in (m.fwd, m.bwd):
            if s is not None:
                s.A_log.add_(torch.randn_like(s.A_log) * 0.5)
                s.dt_proj.bias.add_(torch.randn_like(s.dt_proj.bias) * 2)
                s.D.normal_()
    return m


def padding_mask() -> torch.Tensor:
    return torch.arange(L)[None, :] < torch.tensor(LENGTHS)[:, None]


def old_ssm_forward(s: ssm.SelectiveSSM, x, mask, chunk):
    """SelectiveSSM.forward as it was: Conv1d over (B, E, L), the chunked scan, D skip added."""
    x = zero_padding(x, mask)
    xc = F.silu(s.conv(F.pad(x.transpose(1, 2), (s.kernel - 1, 0))).transpose(1, 2))
    dt, Bm, Cm, A = s.inputs(xc)
    if mask is not None:
        dt = dt * mask.unsqueeze(-1).to(dt.dtype)
    return selective_scan(dt, A, xc, Bm, Cm, chunk, form="chunked") + s.D * xc


def old_block_forward(m: Mamba, x, mask):
    xs, z = m.in_proj(x).chunk(2, -1)
    y = old_ssm_forward(m.fwd, xs, mask, m.settings.chunk_size)
    if m.bwd is not None:
        flipped = None if mask is None else mask.flip(1)
        y = y + old_ssm_forward(m.bwd, xs.flip(1), flipped, m.settings.chunk_size).flip(1)
    return m.out_proj(y * F.silu(z))


def outputs_and_grads(m, forward, x, mask, gy):
    x = x.clone().requires_grad_()
    m.zero_grad(set_to_none=True)
    y = forward(x, mask)
    y.backward(gy)
    return {"y": y.detach(), "x": x.grad, **{n: p.grad.clone() for n, p in m.named_parameters()}}


def max_relative_error(got: dict, want: dict, where=None) -> float:
    """Largest |got - want| over the largest |want|, per tensor (rows `where` of y and x only)."""
    errors = []
    for name, w in want.items():
        g = got[name]
        if where is not None and name in ("y", "x"):
            g, w = g[where], w[where]
        errors.append(((g - w).abs().max() / w.abs().max()).item())
    return max(errors)


needs_fused = pytest.mark.skipif(not ssm_cpu.available(), reason="the fused scan did not build (no C++ compiler?)")


def use_form(monkeypatch, form: str) -> None:
    """selective_scan's default picks `form`: fused where it builds, else recurrent or chunked on a CPU."""
    if form == "fused" and not ssm_cpu.available():
        pytest.skip("the fused scan did not build (no C++ compiler?)")
    monkeypatch.setenv("SEQARENA_FUSED_SCAN", "1" if form == "fused" else "0")
    monkeypatch.setattr(ssm, "MIN_STEP_ELEMENTS", 10 ** 9 if form == "chunked" else 0)


def scan_inputs(Bz, Lz, E, N, seed=0):
    """fp32 scan inputs as a trained model makes them: Δ over 4 decades, a reset, pads with Δ = 0."""
    torch.manual_seed(seed)
    dt = torch.exp(torch.rand(Bz, Lz, E) * 9 - 7)  # e^-7 .. e^2
    dt[:, Lz // 3] = 50.0
    dt[-1, Lz // 2:] = 0.0
    inputs = [dt, -torch.exp(torch.randn(E, N)), torch.randn(Bz, Lz, E), torch.randn(Bz, Lz, N), torch.randn(Bz, Lz, N)]
    return [t.requires_grad_() for t in inputs], torch.randn(Bz, Lz, E)


def scan_results(inputs, gy, form, D=None, raw=False):
    """raw: Δ goes in before its softplus, the rows' tails masked as pads."""
    rows, length = inputs[0].shape[:2]
    mask = torch.arange(length) < torch.tensor([length - i for i in range(rows)])[:, None]
    extra = dict(softplus=True, mask=mask) if raw else {}
    y = selective_scan(*inputs, 8, form=form, D=D, **extra)
    wrt = inputs if D is None else [*inputs, D]
    return dict(zip("yΔAxBCD", (y.detach(), *torch.autograd.grad(y, wrt, gy))))


@needs_fused
@pytest.mark.parametrize("width", [1, 2, 3, 4])  # vectors of 8 channels per task: every block template
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(5, 50, 16, 8), (3, 45, 20, 8), (2, 17, 40, 16), (1, 100, 13, 5), (2, 3, 8, 4)])
@pytest.mark.parametrize("block_inputs", [False, True])  # D x, softplus and mask in the kernel, as the block has them
def test_fused_scan_matches_recurrent_scan(monkeypatch, width, threads, shape, block_inputs):
    """E not a multiple of 8 (padded channels), L not a multiple of the checkpoint chunk and under it."""
    monkeypatch.setattr(ssm_cpu, "WIDTH", width)
    inputs, gy = scan_inputs(*shape)
    D = torch.randn(shape[2], requires_grad=True) if block_inputs else None
    if block_inputs:  # Δ before its softplus: about as often below 0 as above
        inputs[0] = (torch.randn(*shape[:3]) * 4).requires_grad_()
    want = scan_results(inputs, gy, "recurrent", D, raw=block_inputs)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)  # the kernel splits its tasks over torch's thread count
    try:
        got = scan_results(inputs, gy, "fused", D, raw=block_inputs)
    finally:
        torch.set_num_threads(old)
    assert max_relative_error(got, want) < 1e-6  # measured: 3e-7


@needs_fused
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(3, 45, 16, 4), (2, 3, 40, 4), (2, 10, 8, 2)])  # L under K too
def test_fused_conv_silu_matches_conv1d(threads, shape):
    Bz, Lz, E, K = shape
    torch.manual_seed(0)
    x, w, bias = torch.randn(Bz, Lz, E), torch.randn(E, K), torch.randn(E)
    x, w, bias = (t.requires_grad_() for t in (x, w, bias))
    gy = torch.randn(Bz, Lz, E)
    want = F.silu(F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), w.unsqueeze(1), bias, groups=E).transpose(1, 2))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ssm_cpu.ConvSiLU.apply(x, w, bias)
    finally:
        torch.set_num_threads(old)
    got, want = ((y, *torch.autograd.grad(y, (x, w, bias), gy)) for y in (got, want))
    assert max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(got, want)) < 1e-6  # measured: 4e-7


@needs_fused
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_gate_matches_silu_product(threads):
    """z a slice of a wider tensor, as the in-projection's output gives it: rows strided, not contiguous."""
    torch.manual_seed(0)
    y, xz = torch.randn(3, 45, 16, requires_grad=True), torch.randn(3, 45, 32, requires_grad=True)
    gy = torch.randn(3, 45, 16)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ssm_cpu.Gate.apply(y, xz[..., 16:])
    finally:
        torch.set_num_threads(old)
    want = y * F.silu(xz[..., 16:])
    got, want = ((out, *torch.autograd.grad(out, (y, xz), gy)) for out in (got, want))
    assert max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(got, want)) < 1e-6  # measured: 1.4e-7


@needs_fused
def test_cpu_fp32_runs_the_fused_scan_unless_switched_off(monkeypatch):
    inputs, _ = scan_inputs(2, 20, 16, 8)
    fused, chunked = (selective_scan(*inputs, 8, form=f) for f in ("fused", "chunked"))  # chunked: at these sizes
    assert torch.equal(selective_scan(*inputs, 8), fused) and not torch.equal(fused, chunked)
    monkeypatch.setenv("SEQARENA_FUSED_SCAN", "0")
    assert not ssm_cpu.available() and torch.equal(selective_scan(*inputs, 8), chunked)
    double = [t.detach().double() for t in inputs]  # not fp32: the PyTorch scan
    monkeypatch.delenv("SEQARENA_FUSED_SCAN")
    assert torch.equal(selective_scan(*double, 8), selective_scan(*double, 8, form="chunked"))


@pytest.mark.parametrize("form", ["fused", "recurrent"])  # the cpu profile's sizes take either
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_matches_the_old_path(monkeypatch, form, causal, masked):
    use_form(monkeypatch, form)
    m = block(causal)
    torch.manual_seed(1)
    x, gy = torch.randn(B, L, D_MODEL), torch.randn(B, L, D_MODEL)
    mask = padding_mask() if masked else None
    new = outputs_and_grads(m, m.forward, x, mask, gy)
    old = outputs_and_grads(m, lambda x, mask: old_block_forward(m, x, mask), x, mask, gy)
    assert max_relative_error(new, old) < 1e-5  # measured: 5e-7


@pytest.mark.parametrize("segment_elements", [ssm.SEGMENT_ELEMENTS, 1, 16 * 8 * 16])
def test_recurrent_scan_matches_chunked_scan_with_batch_groups(monkeypatch, segment_elements):
    """fp32 scan inputs as a trained model makes them (Δ over 4 decades, resets, pads with Δ = 0).
    16 (position, row) pairs of N·E = 128 floats: the batch of 5 in groups of 2, 1, 2 rows, segments of
    8 positions (50 padded to 56); 1: a group per row, a segment per position."""
    monkeypatch.setattr(ssm, "SEGMENT_ELEMENTS", segment_elements)
    torch.manual_seed(0)
    Bz, Lz, E, N = 5, 50, 16, 8
    dt = torch.exp(torch.rand(Bz, Lz, E) * 9 - 7)  # e^-7 .. e^2
    dt[:, 20] = 50.0
    dt[3, 35:] = 0.0
    inputs = [dt, -torch.exp(torch.randn(E, N)), torch.randn(Bz, Lz, E), torch.randn(Bz, Lz, N), torch.randn(Bz, Lz, N)]
    inputs = [t.requires_grad_() for t in inputs]
    gy = torch.randn(Bz, Lz, E)
    results = {}
    for form in ("recurrent", "chunked"):
        y = selective_scan(*inputs, 8, form=form)
        results[form] = dict(zip("yΔAxBC", (y.detach(), *torch.autograd.grad(y, inputs, gy))))
    assert max_relative_error(results["recurrent"], results["chunked"]) < 1e-5


def test_cpu_steps_unless_a_position_is_too_few_floats(monkeypatch):
    monkeypatch.setenv("SEQARENA_FUSED_SCAN", "0")  # the PyTorch scan's choice of form
    chunks = []  # the chunk the scan runs with: None for the recurrent form
    monkeypatch.setattr(ssm._SelectiveScan, "apply", lambda *args: chunks.append(args[-1]) or args[2])
    for batch in (2, 1):  # batch × E × N = 8192 and 4096 floats per position
        x, bc = torch.ones(batch, 4, 64), torch.ones(batch, 4, 64)
        selective_scan(x, -torch.ones(64, 64), x, bc, bc, 8)
    selective_scan(x, -torch.ones(64, 64), x, bc, bc, 8, form="chunked")
    assert ssm.MIN_STEP_ELEMENTS == 8192 and chunks == [None, 8, 8]


# ----------------------------------------------------------------------------- mambapy

mambapy = pytest.importorskip("mambapy")


def mambapy_copy(m: Mamba):
    """mambapy's block with our weights: the same layout (in_proj, depthwise conv with bias, x_proj to
    Δ-rank + 2N, dt_proj, A_log, D, out_proj), the backward direction's under the `_b` names."""
    from mambapy.mamba import MambaBlock, MambaConfig
    from mambapy.vim import MambaConfig as VimConfig, VMambaBlock

    s = m.settings
    kwargs = dict(d_model=D_MODEL, n_layers=1, d_state=s.d_state, expand_factor=s.expand, d_conv=s.conv_kernel)
    if m.bwd is None:
        ref = MambaBlock(MambaConfig(**kwargs))
    else:
        ref = VMambaBlock(VimConfig(**kwargs, bidirectional=True, divide_output=False))
    names = {"in_proj.weight": "in_proj.weight", "out_proj.weight": "out_proj.weight"}
    for ours, suffix in (("fwd", ""), ("bwd", "_b")):
        for a, b in (("conv.weight", "conv1d"), ("conv.bias", "conv1d"), ("x_proj.weight", "x_proj"),
                     ("dt_proj.weight", "dt_proj"), ("dt_proj.bias", "dt_proj"), ("A_log", "A_log"), ("D", "D")):
            names[f"{ours}.{a}"] = b + suffix + a[a.index("."):] if "." in a else b + suffix
    ours = dict(m.named_parameters())
    theirs = dict(ref.named_parameters())
    names = {k: v for k, v in names.items() if k in ours}
    assert sorted(names.values()) == sorted(theirs), "mambapy's parameter layout changed"
    with torch.no_grad():
        for k, v in names.items():
            theirs[v].copy_(ours[k])
    return ref, names


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["fused", "recurrent", "chunked"])
def test_block_matches_mambapy(monkeypatch, causal, form):
    use_form(monkeypatch, form)
    m = block(causal)
    ref, names = mambapy_copy(m)
    torch.manual_seed(1)
    x, gy = torch.randn(B, L, D_MODEL), torch.randn(B, L, D_MODEL)
    ours = outputs_and_grads(m, m.forward, x, None, gy)
    x_ref = x.clone().requires_grad_()
    y_ref = ref(x_ref)
    y_ref.backward(gy)
    theirs = {"y": y_ref.detach(), "x": x_ref.grad, **{k: ref.get_parameter(v).grad for k, v in names.items()}}
    assert max_relative_error(ours, theirs) < 1e-5  # measured: 4e-7


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["fused", "recurrent"])
def test_padded_rows_match_mambapy_on_the_cut_rows(monkeypatch, causal, form):
    use_form(monkeypatch, form)
    m = block(causal).eval()
    ref, _ = mambapy_copy(m)
    torch.manual_seed(1)
    x = torch.randn(B, L, D_MODEL)
    with torch.no_grad():
        y = m(x, padding_mask())
        for row, n in enumerate(LENGTHS):
            want = ref(x[row:row + 1, :n])[0]
            assert ((y[row, :n] - want).abs().max() / want.abs().max()).item() < 1e-5
