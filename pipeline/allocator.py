"""Keep freed memory in the process instead of handing it back to the kernel after every step.

glibc's malloc returns the top of its heap to the kernel once more than M_TRIM_THRESHOLD is free,
and serves large blocks with mmap/munmap, raising that threshold only as blocks are freed. A training
step frees and re-allocates the same activations every time, so with the defaults each step faulted
its pages in again: about 2,500 minor page faults and 6-8 ms of kernel time per step of the MQAR
Transformer (a ~60 ms step), against 25-60 faults and 0.1 ms with the settings below (docs/results.md).
The process keeps up to its peak; blocks over 32 MiB (glibc's largest mmap threshold on 64-bit) are
still mapped and unmapped. Not glibc (macOS, musl): nothing to do.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; mallopt refuses more


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds; True where that took effect."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python is linked with (no ldconfig subprocess)
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, 2**30)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
