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


def adaptive_timing(fn: Callable[[], object], device: torch.device, max_run_time: float,
                    threshold: float = 0.1) -> dict:
    """Adaptive repeats on torch.utils.benchmark's Timer, as its adaptive_autorange does (stop once
    there are 4 runs and the IQR is within `threshold` of the median, or `max_run_time` is spent), but
    one call per run and no block-size probe: a cell already warmed up costs one call when a single
    call outlasts `max_run_time`, instead of two. Call it warm. {"median_s", "iqr_s", "runs"}."""
    from torch.utils.benchmark import Timer
    from torch.utils.benchmark.utils.common import Measurement

    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    runs: list[Measurement] = []
    spent = 0.0
    while True:
        runs.append(timer.timeit(number=1))
        spent += runs[-1].times[0]
        m = Measurement.merge(runs)[0]
        if spent >= max_run_time or (len(runs) >= 4 and m.iqr / m.median < threshold):
            return {"median_s": float(m.median), "iqr_s": float(m.iqr), "runs": len(runs)}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                      max_run_time: float = 1.0) -> float:
    """This machine's dense matmul FLOP/s in `dtype` (2·size³ per product): the denominator of MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):  # warm-up
        a @ b
    seconds = adaptive_timing(lambda: a @ b, device, max_run_time)["median_s"]
    return 2 * size ** 3 / seconds
