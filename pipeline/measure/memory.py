"""Peak memory of one call: max allocated on CUDA; on CPU the peak resident set size increase.

On Linux, writing "5" to /proc/self/clear_refs resets the RSS high-water mark (VmHWM) to the
current RSS, so the peak of a single call can be read in-process without a fresh subprocess.
Large tensors are mmap-allocated and returned to the OS on free, so RSS tracks them closely.
"""
from __future__ import annotations

from typing import Callable

import torch

_STATUS, _CLEAR = "/proc/self/status", "/proc/self/clear_refs"


def _status_kb(field: str) -> int:
    with open(_STATUS) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{_STATUS} has no {field}")


def cpu_peak_supported() -> bool:
    try:
        with open(_CLEAR, "w") as f:
            f.write("5")
        _status_kb("VmHWM")
        return True
    except OSError:
        return False


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Extra memory (MB) at the peak of `fn()` over what was resident before; None if unmeasurable."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if not cpu_peak_supported():
        return None
    base = _status_kb("VmRSS")
    fn()
    return max(0, _status_kb("VmHWM") - base) / 1024
