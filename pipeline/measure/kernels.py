"""Which attention kernel actually ran, and whether an n x n score matrix was materialised.

F.scaled_dot_product_attention picks its kernel per call from the inputs (device, dtype, masks,
dropout, rank), so the kernel a result was measured with is observed, not inferred from settings:
`probe(fn, n)` runs `fn()` and reports

    {"sdpa_calls": 4, "sdpa_kernels": ["_scaled_dot_product_flash_attention_for_cpu"],
     "materialized_scores": False, "score_tensor": None, "summary": "flash_attention_for_cpu"}

- sdpa_kernels: the fused aten kernels the SDPA calls ran, in order of first use, or "math" for
  a call that ran none (the math fallback: bmm and softmax in plain aten ops);
- materialized_scores: whether an op inside an SDPA call returned a floating-point tensor whose
  last two dims are both >= n, i.e. an n x n score matrix (or an n x n float mask, which costs as
  much); score_tensor names the largest one, e.g. "aten.bmm (4, 1024, 1024)". Only inside SDPA:
  elsewhere a weight, or a (B, L, D) activation with D >= n, has that shape too (an LSTM at n=32
  would be reported for its (100, 38) weight). Inside, only q/k/v-shaped tensors with a head size
  >= n could be mistaken for scores, at n too small to matter;
- summary: the kernel names without their "_scaled_dot_product_" prefix, joined by " + "; "math
  (materialised)" when the math path built such a tensor; "none" when nothing called SDPA.

SDPA is a composite op that a TorchDispatchMode never sees itself, only the kernels under it, so a
TorchFunctionMode marks where each SDPA call begins and ends. Like pipeline/measure/memory.py the
probe slows every op it sees: run it apart from timings.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from pipeline.measure.eager_modes import EagerDispatchMode

aten = torch.ops.aten
FUSED_SDPA = {aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
              aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention,
              aten._scaled_dot_product_fused_attention_overrideable}
MATH = "math"
PREFIX = "_scaled_dot_product_"


class KernelProbe(EagerDispatchMode):
    """Within `with KernelProbe(n) as p:`, p.calls lists the kernels of each SDPA call (set by
    SdpaCalls) and p.score_tensor the largest n x n floating-point output of an op inside one."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.calls: list[list[str]] = []
        self.current: list[str] | None = None  # kernels of the SDPA call in progress
        self.score_tensor: str | None = None  # the largest n x n output: scores rather than a mask
        self.score_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.current is None:  # outside SDPA: weights and (B, L, D) activations can be >= n x n too
            return out
        if func._overloadpacket in FUSED_SDPA:
            self.current.append(func._overloadpacket.__name__)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2 \
                    and min(t.shape[-2:]) >= self.n and t.numel() > self.score_numel:
                self.score_numel = t.numel()
                self.score_tensor = f"aten.{func._overloadpacket.__name__} {tuple(t.shape)}"
        return out


class SdpaCalls(TorchFunctionMode):
    """Brackets every F.scaled_dot_product_attention call for a KernelProbe."""

    def __init__(self, probe: KernelProbe):
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is not F.scaled_dot_product_attention:
            return func(*args, **(kwargs or {}))
        self.probe.current = []
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.probe.calls.append(self.probe.current or [MATH])  # no fused kernel: the math path
            self.probe.current = None


def summarize(kernels: list[str], materialized: bool) -> str:
    if not kernels:
        return "none"
    names = [k.removeprefix(PREFIX) for k in kernels]
    return " + ".join(f"{MATH} (materialised)" if k == MATH and materialized else k for k in names)


def probe(fn: Callable[[], object], n: int) -> dict:
    """Runs fn() once and reports its SDPA kernels and n x n score matrices (module docstring)."""
    kernel_probe = KernelProbe(n)
    with SdpaCalls(kernel_probe), kernel_probe:
        fn()
    kernels = list(dict.fromkeys(k for call in kernel_probe.calls for k in call))
    materialized = kernel_probe.score_tensor is not None
    return {"sdpa_calls": len(kernel_probe.calls), "sdpa_kernels": kernels, "materialized_scores": materialized,
            "score_tensor": kernel_probe.score_tensor, "summary": summarize(kernels, materialized)}
