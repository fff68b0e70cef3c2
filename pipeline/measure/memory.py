"""Peak memory of one call: max allocated on CUDA; on CPU the peak bytes of live tensors.

CPU has no allocator statistics, and the process RSS is too coarse for one forward pass: the
allocator keeps freed pages, so the RSS high-water mark of a warm process barely moves (it read
0.00 MB for every model of the cpu profile). So on CPU a TorchDispatchMode sees every tensor each
op creates and counts its storage's bytes while some tensor still holds it: the high-water mark
of live tensor bytes during the call, over what was alive before. It counts what ops return (not
scratch space inside a fused kernel, which is what a fused kernel is for) and slows the measured
call, so it runs apart from the speed timings.

A CPU has no allocator limit short of the machine's RAM (where the OOM killer ends the process, and
the benchmark with it), so `cap_mb` enforces one: past it the call is stopped with
torch.OutOfMemoryError, as a GPU allocator would, and the benchmark records the cell as `oom`.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch.utils._pytree import tree_leaves

from pipeline.measure.eager_modes import EagerDispatchMode


class LiveTensorBytes(EagerDispatchMode):
    """Within `with LiveTensorBytes() as m:`, m.peak is the most bytes held at once by tensors that
    ops created inside the block (views share their base's storage and are counted once)."""

    def __init__(self, cap_bytes: float | None = None):
        super().__init__()
        self.cap_bytes = cap_bytes
        self.live = self.peak = 0
        self._holders: dict[int, list[int]] = {}  # storage pointer -> [bytes, tensors holding it]

    def _release(self, ptr: int) -> None:
        entry = self._holders.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.live -= entry[0]
                del self._holders[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr, size = storage.data_ptr(), storage.nbytes()
            if not size:
                continue
            entry = self._holders.get(ptr)
            if entry is None:
                entry = self._holders[ptr] = [size, 0]
                self.live += size
                self.peak = max(self.peak, self.live)
                if self.cap_bytes is not None and self.live > self.cap_bytes:
                    raise torch.OutOfMemoryError(
                        f"live tensors reached {self.live / 2**20:.1f} MB, over the cap of "
                        f"{self.cap_bytes / 2**20:.1f} MB")
            entry[1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def peak_memory_mb(fn: Callable[[], object], device: torch.device, cap_mb: float | None = None) -> float:
    """Extra memory (MB) at the peak of `fn()` over what was allocated before it; past `cap_mb`
    (CPU) it raises torch.OutOfMemoryError."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with LiveTensorBytes(None if cap_mb is None else cap_mb * 2**20) as tracker:
        result = fn()
    del result
    return tracker.peak / 2**20
