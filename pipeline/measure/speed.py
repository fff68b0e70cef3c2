"""Wall-clock throughput of a callable: warm-up, then the median of repeated timings."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def adaptive_timing(fn: Callable[[], object], device: torch.device, max_run_time: float) -> dict:
    """torch.utils.benchmark's adaptive timing: repeats until the IQR is within 10% of the median or
    `max_run_time` seconds are spent (at least one run). {"median_s", "iqr_s", "runs"}."""
    from torch.utils.benchmark import Timer

    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    m = timer.adaptive_autorange(threshold=0.1, min_run_time=0.01, max_run_time=max_run_time)
    return {"median_s": float(m.median), "iqr_s": float(m.iqr), "runs": len(m.times) * m.number_per_run}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                      max_run_time: float = 1.0) -> float:
    """This machine's dense matmul FLOP/s in `dtype` (2·size³ per product): the denominator of MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    seconds = adaptive_timing(lambda: a @ b, device, max_run_time)["median_s"]
    return 2 * size ** 3 / seconds
