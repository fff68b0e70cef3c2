"""The benchmark sweep of one model: train step, inference, memory and decoding at each length n.

The backbone is sized to the profile's budget and wrapped in a fixed small embedding and LM head
(`bench.vocab_size`), so the backbone dominates the cost. Every cell holds `bench.tokens_per_batch`
tokens (batch = tokens_per_batch // n): a linear-time backbone then costs the same per cell at every
n, and anything that grows with n is the architecture's own n-dependence. Per cell:

    train      forward + cross-entropy + backward + AdamW step: time (torch.utils.benchmark, adaptive
               repeats, median and IQR) and peak memory
    infer      forward without autograd: time, and peak memory of the whole model and of the backbone
               alone (for attention also on the eager path, which materialises the n x n scores)
    flops      forward FLOPs per token at batch 1 (pipeline/measure/flops.py, attention counted
               analytically); a train step is counted as 3x forward (backward = 2x, Kaplan et al. 2020)
    mfu        achieved FLOP/s over this machine's dense fp32 matmul peak, measured in the same run
    batch 1    at every n >= `bench.fit_min_len`, the same train step again on one sequence
               (`train_s_batch1`; reused where the cell's batch is 1 already): a fixed-batch series,
               because at constant tokens the batch falls as n grows, and a model that cannot use the
               time axis for parallelism (an LSTM's h_{t-1}·W_hh turns from a GEMM into a
               bandwidth-bound GEMV at batch 1) reads that as an n-dependence
    attention  which SDPA kernel ran and whether an n x n score matrix was materialised

Decoding is one greedy generation at batch 1 through the backbone's recurrent `step` (KV cache for
attention, a fixed-size state for RNNs, SSMs, RWKV and linear attention), `bench.max_len` tokens
long. The state reached DECODE_ROUND_TOKENS tokens before each context n is saved, and after the
generation every context is timed again in DECODE_ROUNDS rounds, each visiting the contexts in a
fresh random order from a copy of its saved state: the latency at n is the median over rounds of each
round's median step time (with their IQR). Timed in one pass, n = 4K came last, and a host slowing
down during the pass read as growth with n (Mamba's exponent −0.01, −0.07 and 0.18 in three runs). The
exponent is fitted from `bench.decode_fit_min_len` (default `bench.fit_min_len`) in each round, and its
interval is the t-interval of the rounds' slopes (scaling.fit_exponent_over_rounds).

A cell never ends the sweep by failing: running out of memory (on CPU, past `bench.max_mem_gb` of
live tensors: pipeline/measure/memory.py) is recorded as `oom`, a call slower than
`bench.cell_timeout_s` as `timeout`, and a cell whose memory or time extrapolated from the shorter
cells (pipeline/measure/scaling.py) exceeds a cap is `skipped: predicted over cap` without running.
Longer cells after an oom or timeout are skipped: at a fixed token count cost only grows with n.
"""
from __future__ import annotations

import copy
import os
import random
import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.artifacts import BenchResult
from pipeline.schema import Config, to_dict
from pipeline.measure import env, flops, kernels, scaling
from pipeline.measure.memory import peak_memory_mb
from pipeline.measure.speed import adaptive_timing, matmul_peak_flops
from pipeline.models import registry
from pipeline.models.base import count_params
from pipeline.models.sizing import build_sized

DECODE_WINDOW = 64  # the generation's own reading at n: the median of this many tokens before n
DECODE_ROUND_TOKENS = 16  # tokens timed per context in each round; the round's reading is their median
DECODE_ROUNDS = 5  # a t-interval over 5 rounds' slopes; the rounds add 5 x 16 steps per context
# Per-sequence costs fitted against the family's claimed exponents: (fit key, cell key, claim); a
# cell's cost is divided by its batch, except the fixed-batch series, which is one sequence already.
FITTED = (("train_time", "train_s", "time"), ("infer_time", "infer_s", "time"),
          ("train_time_fixed_batch", "train_s_batch1", "time"),
          ("train_memory", "train_peak_mb", "memory"),
          ("infer_memory", "infer_backbone_peak_mb", "memory"),
          ("infer_memory_eager", "infer_backbone_eager_peak_mb", "memory"))
PER_SEQUENCE = {"train_s_batch1"}


class CellTimeout(RuntimeError):
    pass


class BenchLM(nn.Module):
    """Embedding -> backbone -> LM head: the same small, fixed cost around every backbone."""

    def __init__(self, backbone: nn.Module, vocab_size: int):
        super().__init__()
        d = backbone.d_model
        self.embed = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        self.backbone = backbone
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.embed(ids)))


def sweep_lengths(cfg: Config) -> list[int]:
    out, n = [], cfg.bench.min_len
    while n <= cfg.bench.max_len:
        out.append(n)
        n *= 2
    return out


def device_of(cfg: Config) -> torch.device:
    gpu = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def build(cfg: Config, device: torch.device) -> tuple[BenchLM, dict]:
    """The sized model; causal where the backbone can be (decoding needs it), else bidirectional."""
    causal = registry.backbone_class(cfg.model.backbone).causal_capable
    torch.manual_seed(0)
    backbone, sizing = build_sized(cfg.model, causal=causal)
    model = BenchLM(backbone, cfg.bench.vocab_size).to(device).train()
    info = {"causal": causal, "sizing": sizing, "d_model": backbone.d_model,
            "params": {"backbone": count_params(backbone), "total": count_params(model)}}
    return model, info


def is_oom(error: BaseException) -> bool:
    # CPU allocation failures surface as a plain RuntimeError from the default allocator.
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error) \
        or "out of memory" in str(error)


def train_step_fn(model: BenchLM, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor):
    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()

    return train_step


def batch_at(n: int, cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    ids = torch.randint(cfg.bench.vocab_size, (cfg.bench.tokens_per_batch // n, n + 1), generator=gen).to(device)
    return ids[:, :-1], ids[:, 1:]


def measure_cell(model: BenchLM, optimizer: torch.optim.Optimizer, n: int, cfg: Config, device: torch.device,
                 peak_flops: float) -> dict:
    """One length. The optimizer's state exists already (run_cells warms it up), so the first,
    memory-tracked train step is a warm call too, and doubles as the probe for the time cap."""
    b = cfg.bench
    cap_mb = b.max_mem_gb * 1024
    inputs, targets = batch_at(n, cfg, device)
    batch = inputs.shape[0]
    with torch.no_grad():
        x = model.embed(inputs)  # the backbone's input, for its own measurements
    train_step = train_step_fn(model, optimizer, inputs, targets)

    def infer():
        with torch.no_grad():
            return model(inputs)

    def backbone_infer():
        with torch.no_grad():
            return model.backbone(x)

    cell: dict = {"length": n, "batch": batch, "tokens": batch * n, "status": "ok"}
    t0 = time.perf_counter()
    cell["train_peak_mb"] = peak_memory_mb(train_step, device, cap_mb)
    first = time.perf_counter() - t0
    if first > b.cell_timeout_s:
        raise CellTimeout(f"one train step took {first:.1f} s > bench.cell_timeout_s={b.cell_timeout_s:g}")
    model.zero_grad(set_to_none=True)
    timing = adaptive_timing(train_step, device, b.max_run_time_s)
    cell.update(train_s=timing["median_s"], train_iqr_s=timing["iqr_s"], train_runs=timing["runs"])
    if n >= b.fit_min_len:
        cell.update(fixed_batch_train(model, optimizer, inputs, targets, cell, device, b.max_run_time_s))
    cell["infer_peak_mb"] = peak_memory_mb(infer, device, cap_mb)
    probe: dict = {}  # which SDPA kernel ran, and any n x n scores, seen during the same forward
    cell["infer_backbone_peak_mb"] = peak_memory_mb(lambda: probe.update(kernels.probe(backbone_infer, n)),
                                                    device, cap_mb)
    cell["attention"] = {k: probe[k] for k in ("summary", "sdpa_kernels", "materialized_scores")}
    # the same forward on the eager path that materialises the n x n scores, up to bench.eager_max_len
    if probe["sdpa_calls"] and n <= (b.eager_max_len or b.max_len):
        with sdpa_kernel(SDPBackend.MATH):
            cell["infer_backbone_eager_peak_mb"] = peak_memory_mb(backbone_infer, device, cap_mb)
    timing = adaptive_timing(infer, device, b.max_run_time_s)
    cell.update(infer_s=timing["median_s"], infer_iqr_s=timing["iqr_s"], infer_runs=timing["runs"])
    forward = flops.forward_flops_per_token(lambda: model(inputs[:1]), model, n)
    cell["forward_flops_per_token"] = forward
    cell["train_mfu"] = 3 * forward * batch * n / cell["train_s"] / peak_flops
    cell["infer_mfu"] = forward * batch * n / cell["infer_s"] / peak_flops
    cell["train_tokens_per_s"] = batch * n / cell["train_s"]
    cell["infer_tokens_per_s"] = batch * n / cell["infer_s"]
    return cell


def fixed_batch_train(model: BenchLM, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                      targets: torch.Tensor, cell: dict, device: torch.device, max_run_time: float) -> dict:
    """The cell's train step on its first sequence alone, timed as the cell's (a batch of 1 reuses
    the cell's timing); train_batch1_wall_s is what it added to the sweep, warm-up call included."""
    if cell["batch"] == 1:
        return {"train_s_batch1": cell["train_s"], "train_batch1_iqr_s": cell["train_iqr_s"],
                "train_batch1_runs": cell["train_runs"], "train_batch1_wall_s": 0.0}
    t0 = time.perf_counter()
    step = train_step_fn(model, optimizer, inputs[:1], targets[:1])
    step()  # a new shape: the first call sets up kernels (oneDNN primitives); the cell's own step is warm too
    model.zero_grad(set_to_none=True)
    timing = adaptive_timing(step, device, max_run_time)
    return {"train_s_batch1": timing["median_s"], "train_batch1_iqr_s": timing["iqr_s"],
            "train_batch1_runs": timing["runs"], "train_batch1_wall_s": time.perf_counter() - t0}


def _skip_reason(done: list[dict], n: int, cfg: Config) -> Optional[str]:
    """Why cell n is not run: an earlier cell failed, or memory/time extrapolated past a cap."""
    failed = [c for c in done if c["status"] in ("oom", "timeout")]
    if failed:
        return f"skipped: n={failed[0]['length']} already hit {failed[0]['status']}"
    ok = [c for c in done if c["status"] == "ok"]
    lengths = [c["length"] for c in ok]
    mem = scaling.predict(lengths, [c["train_peak_mb"] for c in ok], n)
    if mem is not None and mem > cfg.bench.max_mem_gb * 1024:
        return f"skipped: predicted over cap ({mem / 1024:.2f} GB > bench.max_mem_gb={cfg.bench.max_mem_gb:g})"
    seconds = scaling.predict(lengths, [c["train_s"] for c in ok], n)
    if seconds is not None and seconds > cfg.bench.cell_timeout_s:
        return f"skipped: predicted over time cap ({seconds:.1f} s > bench.cell_timeout_s={cfg.bench.cell_timeout_s:g})"
    return None


def run_cells(model: BenchLM, cfg: Config, device: torch.device, peak_flops: float, log=print) -> list[dict]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))  # as training
    train_step_fn(model, optimizer, *batch_at(cfg.bench.min_len, cfg, device))()  # AdamW state, allocator
    cells: list[dict] = []
    for n in sweep_lengths(cfg):
        batch = cfg.bench.tokens_per_batch // n
        reason = _skip_reason(cells, n, cfg)
        if reason:
            cells.append({"length": n, "batch": batch, "status": reason})
        else:
            try:
                cells.append(measure_cell(model, optimizer, n, cfg, device, peak_flops))
            except CellTimeout as e:
                cells.append({"length": n, "batch": batch, "status": "timeout", "detail": str(e)})
            except (RuntimeError, torch.OutOfMemoryError) as e:
                if not is_oom(e):
                    raise
                cells.append({"length": n, "batch": batch, "status": "oom", "detail": str(e).splitlines()[0]})
            finally:
                model.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        c = cells[-1]
        shown = (f"train {c['train_tokens_per_s']:,.0f} tok/s, infer {c['infer_tokens_per_s']:,.0f} tok/s, "
                 f"{c['infer_backbone_peak_mb']:.1f} MB backbone"
                 + (f", batch 1 train {c['train_s_batch1'] * 1e3:.1f} ms (+{c['train_batch1_wall_s']:.2f} s)"
                    if "train_s_batch1" in c else "")
                 if c["status"] == "ok" else c["status"])
        log(f"  n={n:6d} batch {batch:4d}: {shown}")
    return cells


@torch.no_grad()
def measure_decode(model: BenchLM, contexts: list[int], cfg: Config, device: torch.device,
                  rounds_count: int = DECODE_ROUNDS) -> dict:
    """Greedy generation at batch 1 through `step`, up to the longest context (or the time cap), then
    DECODE_ROUNDS timing rounds: each restores, for every context reached in a fresh random order,
    a copy of the state saved DECODE_ROUND_TOKENS tokens before it and times those tokens again."""
    backbone = model.backbone
    if not getattr(backbone, "has_step", False):
        return {"status": "no recurrent form (decoding would re-run forward on the prefix)", "cells": []}

    def timed_step(token, state):
        t0 = time.perf_counter()
        y, state = backbone.step(model.embed(token), state)
        token = model.head(y).argmax(-1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return token, state, time.perf_counter() - t0

    resume: dict[int, list[int]] = {}  # tokens generated -> the contexts timed from there in the rounds
    for c in contexts:
        resume.setdefault(max(c - DECODE_ROUND_TOKENS, 0), []).append(c)
    saved: dict[int, tuple] = {}
    model.eval()
    try:
        state = backbone.init_state(1, device)
        token = torch.zeros(1, dtype=torch.long, device=device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max(contexts) and time.perf_counter() - start < cfg.bench.cell_timeout_s:
            for c in resume.get(len(times), []):
                saved[c] = (len(times), copy.deepcopy(state), token.clone())
            token, state, dt = timed_step(token, state)
            times.append(dt)
        reached = [c for c in contexts if len(times) >= c]
        rounds: dict[int, list[float]] = {c: [] for c in reached}
        order = random.Random(0)
        for _ in range(rounds_count):
            for c in order.sample(reached, len(reached)):
                at, state, token = saved[c][0], copy.deepcopy(saved[c][1]), saved[c][2]
                step_times = []
                for _ in range(c - at):
                    token, state, dt = timed_step(token, state)
                    step_times.append(dt)
                rounds[c].append(statistics.median(step_times) * 1e3)
    finally:
        model.train()
    cells, elapsed = [], 0.0
    cumulative = [elapsed := elapsed + t for t in times]
    for c in contexts:
        if c not in rounds:
            cells.append({"context": c, "status": "timeout",
                          "detail": f"generated {len(times)} tokens in bench.cell_timeout_s={cfg.bench.cell_timeout_s:g}"})
            continue
        stream = times[max(0, c - DECODE_WINDOW):c]
        q1, _, q3 = statistics.quantiles(rounds[c], n=4) if len(rounds[c]) > 1 else (rounds[c][0],) * 3
        cells.append({"context": c, "status": "ok", "latency_ms": statistics.median(rounds[c]),
                      "latency_iqr_ms": q3 - q1, "rounds_ms": rounds[c], "round_tokens": c - saved[c][0],
                      # the one generation's own reading: the median of the DECODE_WINDOW tokens before c
                      "stream_latency_ms": statistics.median(stream) * 1e3, "window": len(stream),
                      "sequence_s": cumulative[c - 1]})  # the whole sequence, token by token
    return {"status": "ok", "tokens_generated": len(times), "rounds": rounds_count, "cells": cells}


def parallel_speedup(cells: list[dict], decode: dict) -> list[dict]:
    """How much faster the parallel forward reads a sequence than the model's own recurrence does:
    per sequence, token-by-token decoding time over inference time (infer_s / batch)."""
    infer = {c["length"]: c["infer_s"] / c["batch"] for c in cells if c["status"] == "ok"}
    return [{"length": d["context"], "speedup": d["sequence_s"] / infer[d["context"]]}
            for d in decode.get("cells", []) if d["status"] == "ok" and d["context"] in infer]


def fit_all(cells: list[dict], decode: dict, claim, min_len: int, decode_min_len: Optional[int] = None) -> dict:
    """Exponents of the per-sequence costs (a cell's cost / its batch) over n >= min_len, and of decode
    latency over contexts >= decode_min_len (default min_len)."""
    ok = [c for c in cells if c["status"] == "ok"]
    out = {}
    for key, cell_key, claim_key in FITTED:
        have = [c for c in ok if c.get(cell_key) is not None]
        if not have:
            continue
        lengths = [c["length"] for c in have]
        costs = [c[cell_key] / (1 if cell_key in PER_SEQUENCE else c["batch"]) for c in have]
        claimed = None if claim is None else getattr(claim, f"{claim_key}_exponent")
        # timed series: widened by the exponent's sd between processes; peak memory is exact from run to run
        between = scaling.TIME_SLOPE_SD if cell_key.endswith("_s") or cell_key.endswith("_batch1") else 0.0
        out[key] = _fit(lengths, costs, claimed, min_len, between_sd=between)
    dec = [c for c in decode.get("cells", []) if c["status"] == "ok"]
    claimed = None if claim is None else claim.decode_exponent
    # results written before the rounds existed carry one reading per context
    rounds = [c["rounds_ms"] for c in dec] if dec and all("rounds_ms" in c for c in dec) else None
    out["decode_latency"] = _fit([c["context"] for c in dec], [c["latency_ms"] for c in dec], claimed,
                                 decode_min_len or min_len, rounds)
    return out


def _fit(lengths: list[int], costs: list[float], claimed, min_len: int,
         rounds: Optional[list[list[float]]] = None, between_sd: float = 0.0) -> dict:
    fit = scaling.fit_exponent(lengths, costs, min_len, between_sd) if rounds is None else \
        scaling.fit_exponent_over_rounds(lengths, rounds, min_len, scaling.DECODE_SLOPE_SD)
    local = scaling.local_exponents(lengths, costs)
    return {"fit": fit, "local": local, "claimed": claimed, "verdict": scaling.verdict(fit, claimed, local=local)}


def run(cfg: Config, log=print) -> dict:
    """The whole sweep of cfg.model; the benchmark stage writes what this returns."""
    if cfg.bench.threads:
        torch.set_num_threads(cfg.bench.threads)
    device = device_of(cfg)
    t0 = time.perf_counter()
    fp32 = matmul_peak_flops(device, torch.float32)
    peak = {"fp32": max(fp32.values()), "fp32_by_kernel": fp32}
    if device.type == "cuda":
        peak["bf16"] = max(matmul_peak_flops(device, torch.bfloat16).values())
    model, info = build(cfg, device)
    claim = getattr(model.backbone, "complexity", None)
    log(f"[benchmark] {cfg.model.name}: d_model {info['d_model']}, {info['params']['backbone']:,} backbone "
        f"params, {'causal' if info['causal'] else 'bidirectional'}, fp32 peak {peak['fp32'] / 1e9:.0f} GFLOP/s")
    cells = run_cells(model, cfg, device, peak["fp32"], log)
    if not any(c["status"] == "ok" for c in cells):
        statuses = "; ".join(f"n={c['length']}: {c['status']}" for c in cells)
        raise RuntimeError(f"benchmark of model '{cfg.model.name}': no cell could be measured ({statuses}); "
                           f"raise bench.max_mem_gb or bench.cell_timeout_s, or lower bench.min_len")
    contexts = [n for n in sweep_lengths(cfg) if n <= (cfg.bench.decode_max_len or cfg.bench.max_len)]
    decode = measure_decode(model, contexts, cfg, device) if cfg.bench.decode and info["causal"] \
        else {"status": "not measured" if info["causal"] else "bidirectional: no decoding", "cells": []}
    decode["parallel_speedup"] = parallel_speedup(cells, decode)
    return BenchResult(
        model=cfg.model.name, backbone=cfg.model.backbone, **info,
        claim=None if claim is None else claim.__dict__,
        config={"model": to_dict(cfg.model), "bench": to_dict(cfg.bench)}, profile=cfg.profile,
        env={**env.fingerprint(device), "load_avg_1min": os.getloadavg()[0]},
        matmul_peak_flops=peak, cells=cells, decode=decode,
        fits=fit_all(cells, decode, claim, cfg.bench.fit_min_len, cfg.bench.decode_fit_min_len),
        wall_s=round(time.perf_counter() - t0, 1))
