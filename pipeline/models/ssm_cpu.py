"""Mamba's fused CPU kernels (ssm_cpu.cpp, its native half): the selective scan, and the causal conv with its SiLU.
Built on first use (a few seconds, once per source version and CPU) into the user's cache, called through ctypes.

On a CPU the PyTorch scan is bound by memory traffic: every op reads and writes (positions × N × E)
floats, about twenty such passes per train step. The fused kernel keeps the states in cache and
passes over the inputs only; the conv's K shifted multiply-adds and their autograd become one pass
each way. They need a C++ compiler (`c++`, or $CXX); without one, or with
SEQARENA_FUSED_SCAN=0, `available()` is False and ssm.py runs its PyTorch path, which computes the same.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_suffix(".cpp")  # code_deps counts it as part of this module
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread"]
OPENMP = "-fopenmp"  # the kernels then share torch's libgomp thread pool; built without it if it fails
LANES = 8  # floats per vector in the kernel: channels are padded to a multiple
WIDTH = 2  # vectors of channels per task (1 to 4): 16 channels × N states, their chunk of states in L2
CHUNK = 16  # positions per checkpoint: the backward recomputes a chunk's states from the one before it

_lib = None  # the loaded library; False once building it failed


class _Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("B", "L", "E", "N", "chunk", "width", "softplus")]


def _cpu_id() -> str:
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def _build() -> Path | None:
    """The compiled library in the user's cache, keyed by source, flags and CPU (-march=native)."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *FLAGS, OPENMP, _cpu_id()]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "seqarena"
    lib = cache / f"ssm_cpu-{key}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:  # built aside, renamed: concurrent builds are safe
        out = Path(tmp) / lib.name
        for flags in ([*FLAGS, OPENMP], FLAGS):
            done = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(out)], capture_output=True, text=True)
            if done.returncode == 0:
                break
        else:
            warnings.warn(f"ssm_cpu: {compiler} could not build {SOURCE.name}, Mamba runs its PyTorch scan: "
                          + (done.stderr.strip().splitlines() or ["no message"])[-1])
            return None
        os.replace(out, lib)
    return lib


def _load():
    global _lib
    if _lib is None:
        try:
            path = _build()
            _lib = ctypes.CDLL(str(path)) if path else False
        except OSError:
            _lib = False
        if _lib:
            _lib.scan_forward.argtypes = [_Shape] + [ctypes.c_void_p] * 9 + [ctypes.c_int]
            _lib.scan_backward.argtypes = [_Shape] + [ctypes.c_void_p] * 16 + [ctypes.c_int]
            _lib.conv_forward.argtypes = [_Shape] + [ctypes.c_void_p] * 4 + [ctypes.c_int]
            _lib.conv_backward.argtypes = [_Shape] + [ctypes.c_void_p] * 7 + [ctypes.c_int]
            i, p = ctypes.c_int, ctypes.c_void_p
            _lib.gate_forward.argtypes = [i, i, p, i, p, i, p, i]
            _lib.gate_backward.argtypes = [i, i, p, i, p, i, p, p, p, i]
    return _lib


def available() -> bool:
    return os.environ.get("SEQARENA_FUSED_SCAN", "1") != "0" and bool(_load())


def _pad(t: torch.Tensor, E: int) -> torch.Tensor:
    t = t.contiguous()
    return t if t.shape[-1] == E else torch.nn.functional.pad(t, (0, E - t.shape[-1])).contiguous()


def _ptrs(*tensors):
    return [None if t is None else t.data_ptr() for t in tensors]


class FusedScan(torch.autograd.Function):
    """selective_scan's y from Δ, A, x, B, C as ssm.py defines it, plus D x (D (E,), or None: none), Δ
    softplus'd first if `softplus` and zeroed where `mask` (B, L) is False. Saves the inputs and the state
    entering every CHUNK positions, O(L (E + N) + (L / CHUNK) N E)."""

    @staticmethod
    def forward(ctx, dt, A, x, Bm, Cm, D, softplus, mask):
        (B, L, E0), N = x.shape, A.shape[1]
        E = -(-E0 // LANES) * LANES
        dt, x, Bm, Cm = _pad(dt, E), _pad(x, E), Bm.contiguous(), Cm.contiguous()
        At, D = _pad(A.t(), E), x.new_zeros(E) if D is None else _pad(D, E)
        At2 = At * math.log2(math.e)
        mask = None if mask is None else mask.to(x.dtype).contiguous()
        shape = _Shape(B, L, E, N, CHUNK, WIDTH, int(softplus))
        y, ckpt = x.new_empty(B, L, E), x.new_empty(-(-L // CHUNK), B, N, E)
        _load().scan_forward(shape, *_ptrs(dt, x, Bm, Cm, At2, D, mask, y, ckpt), torch.get_num_threads())
        ctx.save_for_backward(dt, x, Bm, Cm, At, At2, D, mask, ckpt)
        ctx.shape, ctx.E0 = shape, E0
        return y if E == E0 else y[..., :E0]

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        dt, x, Bm, Cm, At, At2, D, mask, ckpt = ctx.saved_tensors
        s, E0 = ctx.shape, ctx.E0
        gy = _pad(gy, s.E)
        blocks = -(-s.E // (LANES * s.width))
        gdt, gx = torch.empty_like(dt), torch.empty_like(x)
        gB, gC = x.new_empty(2, blocks, s.B, s.L, s.N)
        gA, gD = x.new_empty(s.B, s.N, s.E), x.new_empty(s.B, s.E)
        _load().scan_backward(s, *_ptrs(dt, x, Bm, Cm, At2, At, D, mask, ckpt, gy, gdt, gx, gB, gC, gA, gD),
                              torch.get_num_threads())
        gD = gD.sum(0)[:E0] if ctx.needs_input_grad[5] else None
        return gdt[..., :E0], gA.sum(0)[:, :E0].t(), gx[..., :E0], gB.sum(0), gC.sum(0), gD, None, None


class ConvSiLU(torch.autograd.Function):
    """silu(causal depthwise conv of x (B, L, E) with weight (E, K) and bias (E,)), E a multiple of 8
    (`conv_fits`). Saves only its inputs: the backward recomputes the pre-activation."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x, wt = x.contiguous(), weight.t().contiguous()
        (B, L, E), K = x.shape, weight.shape[1]
        shape = _Shape(B, L, E, 1, K, 4, 0)  # `chunk` carries K; tasks of 4 vectors of channels
        out = torch.empty_like(x)
        _load().conv_forward(shape, *_ptrs(x, wt, bias, out), torch.get_num_threads())
        ctx.save_for_backward(x, wt, bias)
        ctx.shape = shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, gout):
        x, wt, bias = ctx.saved_tensors
        s, gout = ctx.shape, gout.contiguous()
        gx, gwt, gb = torch.empty_like(x), x.new_empty(s.B, s.chunk, s.E), x.new_empty(s.B, s.E)
        _load().conv_backward(s, *_ptrs(x, wt, bias, gout, gx, gwt, gb), torch.get_num_threads())
        return gx, gwt.sum(0).t(), gb.sum(0)


def conv_fits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """ConvSiLU applies: fp32 CPU tensors, channels a multiple of 8, and the kernel built."""
    return (x.shape[-1] % LANES == 0 and all(t.device.type == "cpu" and t.dtype == torch.float32
                                              for t in (x, weight, bias)) and available())


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(..., E) as (rows, E) with unit channel stride: a view where the strides allow one (a slice of the
    in-projection's output does), else a copy."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


class Gate(torch.autograd.Function):
    """Mamba's output gate y ⊙ silu(z) in one pass each way; `gate_fits` says when it applies."""

    @staticmethod
    def forward(ctx, y, z):
        y2, z2 = _rows(y), _rows(z)
        out = y.new_empty(y.shape)
        _load().gate_forward(*y2.shape, y2.data_ptr(), y2.stride(0), z2.data_ptr(), z2.stride(0), out.data_ptr(),
                             torch.get_num_threads())
        ctx.save_for_backward(y2, z2)
        ctx.shape = y.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        y2, z2 = ctx.saved_tensors
        g = g.contiguous()
        gy, gz = g.new_empty(ctx.shape), g.new_empty(ctx.shape)
        _load().gate_backward(*y2.shape, y2.data_ptr(), y2.stride(0), z2.data_ptr(), z2.stride(0), g.data_ptr(),
                              gy.data_ptr(), gz.data_ptr(), torch.get_num_threads())
        return gy, gz


def gate_fits(y: torch.Tensor, z: torch.Tensor) -> bool:
    return (y.shape == z.shape and y.shape[-1] % LANES == 0 and available()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (y, z)))
