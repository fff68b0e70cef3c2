"""Wall-clock throughput of a callable: warm-up, then the median of repeated timings."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock interval covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def adaptive_timing(fn: Callable[[], object], device: torch.device, max_run_time: float,
                    threshold: float = 0.1) -> dict:
    """Adaptive repeats in the manner of torch.utils.benchmark's adaptive_autorange (stop once there
    are 4 runs and the IQR is within `threshold` of the median, or `max_run_time` is spent), with its
    Measurement for the statistics. One call per run: Timer.timeit(1) runs two warm-up calls before
    each timed one, which tripled every benchmark cell (a slow cell is warm already: call it warm).
    {"median_s", "iqr_s", "runs"}."""
    from torch.utils.benchmark.utils.common import Measurement, TaskSpec

    task = TaskSpec(stmt="fn()", setup="pass", num_threads=torch.get_num_threads())
    times: list[float] = []
    while True:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(max(time.perf_counter() - t0, 1e-9))
        m = Measurement(number_per_run=1, raw_times=list(times), task_spec=task)
        if sum(times) >= max_run_time or (len(times) >= 4 and m.iqr / m.median < threshold):
            return {"median_s": float(m.median), "iqr_s": float(m.iqr), "runs": len(times)}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                      max_run_time: float = 1.0) -> dict:
    """This machine's dense matmul FLOP/s in `dtype` (2·size³ per product) per kernel,
    {"<kernel>": FLOP/s}; the fastest is the denominator of MFU. On CPU both torch.mm (MKL) and oneDNN's matmul are
    timed and the faster counts: on the 2-core AVX-512 machine of stack-notes torch.mm reaches
    ~180 GFLOP/s and oneDNN ~420, and oneDNN's LSTM alone ran at 260, i.e. an MFU over 100% against
    torch.mm's figure."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    candidates = {"torch.mm": lambda: a @ b}
    if device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        a_dnn, b_dnn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        candidates["onednn"] = lambda: torch._C._nn.mkldnn_linear(a_dnn, b_dnn, None)
    out = {}
    for name, fn in candidates.items():
        for _ in range(3):  # warm-up
            fn()
        out[name] = 2 * size ** 3 / adaptive_timing(fn, device, max_run_time / len(candidates))["median_s"]
    return out
