"""The verdict per length: for every length bucket, the most accurate model of each task (or the tied set),
and the cost leaders from the benchmark (quality joined with cost per bucket: verdict_buckets.py).
pipeline/report/verdict.py renders it as the report's first table.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.measure import scaling
from pipeline.report import significance
from pipeline.report.format import MIN_BUCKET_EXAMPLES, _is_nan, fmt_mb, fmt_metric, fmt_si

SPEED_COLUMNS = (("fastest to train", "train_tokens_per_s", False, "tok/s"),
                 ("fastest inference", "infer_tokens_per_s", False, "tok/s"),
                 ("leanest (train step)", "train_peak_mb", True, "MB"))





def _ranked(values: dict[str, float], lower_is_better: bool) -> list[tuple[str, float]]:
    clean = [(m, v) for m, v in values.items() if not _is_nan(v)]
    return sorted(clean, key=lambda mv: (mv[1] if lower_is_better else -mv[1], mv[0]))


def _quality_cell(task_results: list[dict], length: int, min_examples: int) -> str:
    """The best model of one task in the bucket whose upper edge is `length`: named only when a paired
    bootstrap on that bucket's examples says it beats the runner-up, else the two are "tied"."""
    values, count, metric, lower, by_model, index = {}, None, None, False, {}, None
    for r in task_results:
        edges = r["buckets"]["edges"]
        if length not in edges:
            continue
        i = edges.index(length)
        values[r["model"]] = float("nan") if r["per_bucket"][i] is None else float(r["per_bucket"][i])
        count = r["count"][i] if count is None else min(count, r["count"][i])
        metric, lower, by_model[r["model"]], index = r["metric"], not r["higher_is_better"], r, i
    if not values:
        return ""
    if not count:
        return "no examples"
    if count < min_examples:
        return f"too few examples ({count} < {min_examples})"
    ranked = _ranked(values, lower)
    if not ranked:
        return "—"
    best, value = ranked[0]
    if len(ranked) == 1:
        return f"{best} {fmt_metric(value)} (only model)"
    runner, second = ranked[1]
    sign = "−" if lower else "+"
    margin = f"{sign}{fmt_metric(abs(value - second), like=value)} vs {runner}"
    verdict = significance.in_bucket(by_model[best], by_model[runner], index) if "_path" in by_model[best] \
        else "not paired"
    intervals = [_bucket_interval(by_model[m], index) for m in (best, runner)]
    if verdict in ("tied", "worse") and significance.apart(*intervals):  # "tied" is never printed beside these
        return f"{best} {fmt_metric(value)} ({margin}; unresolved: intervals apart, paired test not significant)"
    if verdict == "tied":
        return f"{best} ≈ {runner}: tied ({fmt_metric(value)}, {margin}; paired bootstrap)"
    note = {"better": "", "suggested": "; suggested, one seed"}.get(verdict, ", not paired")
    return f"{best} {fmt_metric(value)} ({margin}{note})"


# the timed quantity behind each cost column, for its spread (verdict.cell_log_sd); memory is exact
_TIMED = {"train_tokens_per_s": "train_s", "infer_tokens_per_s": "infer_s", "decode_latency_ms": "decode"}


def cell_log_sd(cell: dict, key: str) -> float:
    """The sd of log(cost) of one cell's `key`: timings from their median, IQR and number of runs with the
    run-to-run floor (scaling.log_sd); peak memory is exact from run to run."""
    if key == "decode":
        return scaling.log_sd(cell["latency_ms"], cell.get("latency_iqr_ms"), cell.get("window"))
    if key.endswith("_s"):
        stem = key[:-2]
        return scaling.log_sd(cell[key], cell.get(f"{stem}_iqr_s"), cell.get(f"{stem}_runs"))
    return 0.0


def _bench_cell(bench: list[dict], length: int, key: str, lower_is_better: bool, unit: str) -> str:
    """The cheapest model at one length and its ratio to the runner-up; "A ≈ B" when the ratio's 95%
    interval (timing spread, scaling.ratio_interval) includes 1."""
    values, sds = {}, {}
    for r in bench:
        if key == "decode_latency_ms":
            cell = next((c for c in r["decode"].get("cells", []) if c["context"] == length), None)
            if cell and cell["status"] == "ok":
                values[r["model"]], sds[r["model"]] = cell["latency_ms"], cell_log_sd(cell, "decode")
            continue
        cell = next((c for c in r["cells"] if c["length"] == length), None)
        if cell and cell["status"] == "ok" and cell.get(key) is not None:
            values[r["model"]] = cell[key]
            sds[r["model"]] = cell_log_sd(cell, _TIMED[key]) if key in _TIMED else 0.0
    ranked = _ranked(values, lower_is_better)
    if not ranked:
        return ""
    fmt = fmt_mb if unit == "MB" else (lambda v: f"{v:.2f}") if unit == "ms" else fmt_si
    best, value = ranked[0]
    if len(ranked) == 1:
        return f"{best} {fmt(value)} {unit} (only model)"
    runner, second = ranked[1]
    _, lo, _ = scaling.ratio_interval(*((second, value) if lower_is_better else (value, second)), sds[best], sds[runner])
    if lo <= 1:
        ratio = second / value if lower_is_better else value / second
        return f"{best} ≈ {runner}: {fmt(value)} {unit}, {ratio:.2f}× (within timing noise)"
    if lower_is_better:
        return f"{best} {fmt(value)} {unit} ({runner} {second / value:.2f}× that)"
    return f"{best} {fmt(value)} {unit} ({value / second:.2f}× {runner})"


def _bucket_interval(r: dict, index: int) -> dict | None:
    return (r.get("per_bucket_interval") or [None] * (index + 1))[index]


def verdict_rows(results: list[dict], bench: list[dict], min_examples: int = MIN_BUCKET_EXAMPLES) -> pd.DataFrame:
    """One row per length (every task bucket edge and every benchmarked length)."""
    tasks = sorted({r["task"] for r in results})
    lengths = sorted({e for r in results for e in r["buckets"]["edges"]} |
                     {c["length"] for r in bench for c in r["cells"]})
    rows = []
    for n in lengths:
        row: dict[str, Any] = {"length": n}
        for task in tasks:
            mine = [r for r in results if r["task"] == task]
            row[f"most accurate: {task}"] = _quality_cell(mine, n, min_examples)
        for column, key, lower, unit in SPEED_COLUMNS[:2]:
            row[column] = _bench_cell(bench, n, key, lower, unit)
        row["lowest decode latency"] = _bench_cell(bench, n, "decode_latency_ms", True, "ms")
        column, key, lower, unit = SPEED_COLUMNS[2]
        row[column] = _bench_cell(bench, n, key, lower, unit)
        rows.append(row)
    return pd.DataFrame(rows)


def bucket_label(n: int, lengths: list[int]) -> str:
    i = lengths.index(n)
    return f"{1 if i == 0 else lengths[i - 1] + 1}–{n}"


