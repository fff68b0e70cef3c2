"""The report's pandas tables, built from collected eval.json results.

build_tables returns {"summary", "buckets", "speed", "extrapolation"}: one summary row per task x
model (ranked best first within a task), and long-format per-bucket, per-length speed/memory and
length-extrapolation rows. Also owns the seed statistics (mean and sample std, ddof=1, recomputed
from the per-seed numbers), the "at chance" rule against the data's baseline, and flat_metrics
for `dvc metrics show` and the W&B summary.

No torch here: the report runs (and is tested) where only the results exist.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import pandas as pd

from pipeline.report import context_use, significance
from pipeline.report.format import _is_nan, _num

# "At chance" rule: a model is flagged when it is not clearly better than the data's chance-level
# baseline (unigram perplexity, majority-class accuracy, copy-the-source BLEU, ...).
#   lower is better : mean >= (1 - CHANCE_REL_MARGIN) * baseline   (i.e. <10% better than unigram)
#   higher is better: mean <= baseline + CHANCE_ABS_MARGIN * scale, scale = 100 for the 0-100 metrics
#                     of PERCENT_METRICS (BLEU, chrF: within 2 points) and 1 otherwise (accuracy:
#                     within 2 points of majority class). By name: a BLEU of 0.26 is still 0-100.
PERCENT_METRICS = ("bleu", "chrf")
CHANCE_REL_MARGIN = 0.10
CHANCE_ABS_MARGIN = 0.02
AT_CHANCE = "⚠ at chance"


# ----------------------------------------------------------------------------- numbers


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for a single value) and count of the non-missing values."""
    s = pd.Series([_num(v) for v in values], dtype=float).dropna()
    if s.empty:
        return float("nan"), float("nan"), 0
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else float("nan"), int(len(s))


def at_chance(value: float, baseline: Optional[float], higher_is_better: bool, metric: str = "") -> Optional[bool]:
    """True when `value` is not clearly better than the chance-level baseline (rule: above)."""
    if _is_nan(value) or _is_nan(baseline):
        return None
    if higher_is_better:
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        return value <= baseline + CHANCE_ABS_MARGIN * scale
    return value >= (1.0 - CHANCE_REL_MARGIN) * baseline


def _baseline(r: dict) -> tuple[Optional[str], float]:
    b = r.get("baseline") or {}
    return b.get("name"), _num(b.get("value"))


# ----------------------------------------------------------------------------- tables


CURVE_COLUMNS = ["task", "model", "seed", "step", "split", "metric", "value"]  # train's curve.csv, per run


def build_tables(results: list[dict]) -> dict[str, pd.DataFrame]:
    """{"summary", "buckets", "speed", "extrapolation", "curves", "context_use"} DataFrames; models within a task are
    ranked best first."""
    summary = pd.DataFrame([_summary_row(r) for r in results])
    summary = _rank(summary)
    by_key = {(r["task"], r["model"]): r for r in results}
    ranked = {}
    for task in summary["task"].unique():  # paired bootstrap of each model against the next one
        ranked.update({(task, m): v for m, v in significance.vs_next(
            [by_key[(task, m)] for m in summary.loc[summary["task"] == task, "model"]]).items()})
    summary["vs_next"] = [ranked.get((t, m), "") for t, m in zip(summary["task"], summary["model"])]
    order = {(t, m): i for i, (t, m) in enumerate(zip(summary["task"], summary["model"]))}
    by_order = sorted(results, key=lambda r: order[(r["task"], r["model"])])
    buckets = pd.DataFrame([row for r in by_order for row in _bucket_rows(r)], columns=BUCKET_COLUMNS)
    speed = pd.DataFrame([row for r in by_order for row in _speed_rows(r)], columns=SPEED_COLUMNS)
    extrapolation = pd.DataFrame([row for r in by_order for row in _extrapolation_rows(r)],
                                 columns=EXTRAPOLATION_COLUMNS)
    curves = pd.DataFrame([{"task": r["task"], "model": r["model"], **row} for r in by_order
                           for row in r.get("curve") or []], columns=CURVE_COLUMNS)
    context = pd.DataFrame(context_use.csv_rows(context_use.rows(by_order)), columns=context_use.COLUMNS)
    return {"summary": summary, "buckets": buckets, "speed": speed, "extrapolation": extrapolation, "curves": curves,
            "context_use": context}


# The range a metric can take: a Student-t interval across a few seeds can reach past it (three seeds
# at 0.998, 0.998, 1.000 give [0.996, 1.001]), which no accuracy can be.
METRIC_RANGE = {"acc": (0.0, 1.0), "bleu": (0.0, 100.0), "chrf": (0.0, 100.0), "ppl": (1.0, math.inf)}


def _clip(metric: str, x: Any) -> float:
    """An interval end, clipped to the metric's range (NaN stays NaN)."""
    lo, hi = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    v = _num(x)
    return v if v != v else min(max(v, lo), hi)


def _summary_row(r: dict) -> dict:
    mean, std, n = mean_std(s["overall"] for s in r["seeds"])
    base_name, base = _baseline(r)
    train_tps = _num((r.get("train_speed") or {}).get("tokens_per_s"))
    infer_len, infer_tps = _longest_measured(r.get("speed") or {})
    env = r.get("env") or {}
    rf_tokens, rf_measured_at, rf_full = receptive_field(r.get("receptive_field"))
    return {
        "task": r["task"], "task_kind": r["task_kind"], "model": r["model"], "backbone": r.get("backbone"),
        "params_backbone": r["params"]["backbone"], "params_total": r["params"]["total"],
        "flops_per_token": _num(r.get("flops_per_token")),
        "receptive_field": rf_tokens, "receptive_field_measured_at": rf_measured_at, "receptive_field_full": rf_full,
        "metric": r["metric"], "higher_is_better": bool(r["higher_is_better"]),
        "value": mean, "std": std, "n_seeds": n, "chrf": _num(r.get("chrf")),
        "chrf_lo": _clip("chrf", (r.get("chrf_interval") or {}).get("lo")),
        "chrf_hi": _clip("chrf", (r.get("chrf_interval") or {}).get("hi")),
        "lo": _clip(r["metric"], (r.get("overall_interval") or {}).get("lo")),
        "hi": _clip(r["metric"], (r.get("overall_interval") or {}).get("hi")),
        "interval_method": (r.get("overall_interval") or {}).get("method"),
        "baseline_name": base_name, "baseline": base,
        "at_chance": at_chance(mean, base, r["higher_is_better"], r["metric"]),
        "train_tokens_per_s": train_tps,
        "infer_tokens_per_s": infer_tps, "infer_length": infer_len,
        "peak_mem_mb": _at_length((r.get("speed") or {}), "peak_mem_mb", infer_len),
        "speed_batch_size": (r.get("speed") or {}).get("batch_size"),
        "device": env.get("device"), "torch": env.get("torch"),
    }


def receptive_field(value: Any) -> tuple[float, float, Optional[bool]]:
    """(tokens, measured_at, full) of eval.json's receptive_field: a dict, a plain int (older files,
    a formula such as a TCN's) or null; missing parts are NaN / None."""
    if isinstance(value, dict):
        full = value.get("full")
        return _num(value.get("tokens")), _num(value.get("measured_at")), None if full is None else bool(full)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float("nan"), None
    return float("nan"), float("nan"), None


def _longest_measured(speed: dict) -> tuple[Optional[int], float]:
    """Throughput at the longest length that has a number (longer ones may be OOM / skipped)."""
    for length, tps in reversed(list(zip(speed.get("lengths") or [], speed.get("infer_tokens_per_s") or []))):
        if tps is not None:
            return int(length), float(tps)
    return None, float("nan")


def _at_length(speed: dict, key: str, length: Optional[int]) -> float:
    values = dict(zip(speed.get("lengths") or [], speed.get(key) or []))
    return _num(values.get(length))


def _rank(summary: pd.DataFrame) -> pd.DataFrame:
    """Sort tasks by name and models best first (missing metric last)."""
    key = summary["value"].where(~summary["higher_is_better"], -summary["value"])
    return (summary.assign(_key=key).sort_values(["task", "_key", "model"], na_position="last")
            .drop(columns="_key").reset_index(drop=True))


BUCKET_COLUMNS = ["task", "model", "bucket", "bucket_hi", "unit", "metric", "value", "std", "n_seeds", "count",
                  "lo", "hi"]
SPEED_COLUMNS = ["task", "model", "length", "infer_tokens_per_s", "latency_ms", "peak_mem_mb", "batch_size", "device"]
EXTRAPOLATION_COLUMNS = ["task", "model", "sweep", "split", "length", "num_pairs", "value", "lo", "hi", "examples",
                         "chance"]


def _bucket_rows(r: dict) -> list[dict]:
    b = r["buckets"]
    rows = []
    for i, (label, hi) in enumerate(zip(b["labels"], b["edges"])):
        mean, std, n = mean_std(s["per_bucket"][i] for s in r["seeds"])
        interval = (r.get("per_bucket_interval") or [None] * len(b["edges"]))[i] or {}
        rows.append({"task": r["task"], "model": r["model"], "bucket": label, "bucket_hi": int(hi),
                     "unit": b.get("unit"), "metric": r["metric"], "value": mean, "std": std, "n_seeds": n,
                     "count": int(r["count"][i] or 0), "lo": _clip(r["metric"], interval.get("lo")), "hi": _clip(r["metric"], interval.get("hi"))})
    return rows


def add_bench_memory(speed: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """speed with `backbone_mb_per_seq`: the benchmark's backbone inference peak per sequence (its cell at the
    same model and length, same budget; NaN where the sweep has no such cell). speed.json measures the whole
    model (embedding, backbone, head), where a large vocabulary hides the backbone."""
    speed = speed.copy()
    cells = {} if bench is None or not len(bench) else {
        (m, int(n)): mb / b for m, n, mb, b, st in
        zip(bench["model"], bench["length"], bench["infer_backbone_peak_mb"], bench["batch"], bench["status"])
        if st == "ok" and mb is not None and b}
    speed["backbone_mb_per_seq"] = [cells.get((m, int(n)), float("nan")) for m, n in zip(speed["model"], speed["length"])]
    return speed


def summary_backbone_memory(summary: pd.DataFrame, speed: pd.DataFrame) -> pd.DataFrame:
    """summary with `backbone_mb_per_seq` at each run's `infer_length` (add_bench_memory's column)."""
    cell = {(t, m, int(n)): v for t, m, n, v in zip(speed["task"], speed["model"], speed["length"],
                                                     speed.get("backbone_mb_per_seq", pd.Series(dtype=float)))}
    return summary.assign(backbone_mb_per_seq=[
        float("nan") if _is_nan(n) else cell.get((t, m, int(n)), float("nan"))
        for t, m, n in zip(summary["task"], summary["model"], summary["infer_length"])])


def _speed_rows(r: dict) -> list[dict]:
    speed = r.get("speed") or {}
    lengths = speed.get("lengths") or []
    none = [None] * len(lengths)
    return [{"task": r["task"], "model": r["model"], "length": int(length), "infer_tokens_per_s": _num(tps),
             "latency_ms": _num(lat), "peak_mem_mb": _num(mem), "batch_size": speed.get("batch_size"),
             "device": speed.get("device")}
            for length, tps, lat, mem in zip(lengths, speed.get("infer_tokens_per_s") or none,
                                             speed.get("latency_ms") or none, speed.get("peak_mem_mb") or none)]


def _extrapolation_rows(r: dict) -> list[dict]:
    """The extra test splits of a synthetic task, each with its interval, as two sweeps that start from
    the test split: `length` (the test split at the trained length, then test_2x, test_4x, ...) and,
    for MQAR with a pairs sweep, `pairs` (test_2pairs, ..., with the test split at its num_pairs)."""
    splits = r.get("extrapolation") or {}
    if not splits:
        return []
    test_overall, _, _ = mean_std(s["overall"] for s in r["seeds"])
    interval = r.get("overall_interval") or {}
    # The generator makes every extra split as large as the test split (synthetic.split_sizes).
    examples = next((s.get("examples") for s in splits.values() if s.get("examples") is not None), None)
    test = {"split": "test", "length": trained_length(r), "value": test_overall, "examples": examples,
            "lo": _clip(r["metric"], interval.get("lo")), "hi": _clip(r["metric"], interval.get("hi"))}
    rows = [{**test, "sweep": "length"}]
    pairs = (((r.get("config") or {}).get("task") or {}).get("synthetic") or {}).get("num_pairs")
    if pairs and any(s.get("num_pairs") for s in splits.values()):
        rows.append({**test, "sweep": "pairs", "num_pairs": int(pairs), "chance": (r.get("baseline") or {}).get("value")})
    for name, s in sorted(splits.items(), key=lambda kv: (_num(kv[1].get("length")), _num(kv[1].get("num_pairs")))):
        found = s.get("interval") or {}
        rows.append({"split": name, "sweep": "pairs" if s.get("num_pairs") else "length", "length": s.get("length"),
                     "value": _num(s.get("overall")), "examples": s.get("examples"),
                     "lo": _clip(r["metric"], found.get("lo")), "hi": _clip(r["metric"], found.get("hi")),
                     "num_pairs": s.get("num_pairs"), "chance": s.get("chance")})
    return [{"task": r["task"], "model": r["model"], **row} for row in rows]


def trained_lengths(r: dict) -> list[int]:
    """Every sequence length the model trained at: the generator's mixture (synthetic.train_lengths, e.g.
    mqar-long's 64 and 128), each cut to task.max_len, else the one trained_length."""
    task = (r.get("config") or {}).get("task") or {}
    mixture = (task.get("synthetic") or {}).get("train_lengths") or []
    cut = task.get("max_len")
    lengths = sorted({min(int(n), int(cut)) if cut else int(n) for n in mixture})
    one = trained_length(r)
    return lengths or ([one] if one else [])


def trained_length(r: dict) -> Optional[int]:
    """Sequence length the model trained at: the generator's seq_len, cut to task.max_len at batching."""
    task = (r.get("config") or {}).get("task") or {}
    lengths = [n for n in (task.get("max_len"), (task.get("synthetic") or {}).get("seq_len")) if n]
    return int(min(lengths)) if lengths else None


def flat_metrics(summary: pd.DataFrame, extrapolation: Optional[pd.DataFrame] = None) -> dict[str, float]:
    """{"<task>/<model>/<key>": number}: headline numbers for `dvc metrics show` and W&B summary."""
    out: dict[str, float] = {}
    for row in summary.itertuples(index=False):
        prefix = f"{row.task}/{row.model}"
        for key, value in ((row.metric, row.value), (f"{row.metric}_std", row.std), ("chrf", row.chrf),
                           ("params_backbone", row.params_backbone), ("flops_per_token", row.flops_per_token),
                           ("train_tokens_per_s", row.train_tokens_per_s),
                           ("infer_tokens_per_s", row.infer_tokens_per_s)):
            if not _is_nan(value):
                out[f"{prefix}/{key}"] = float(value)
    if extrapolation is not None:
        metric = dict(zip(summary["task"], summary["metric"]))
        for row in extrapolation[extrapolation["split"] != "test"].itertuples(index=False):
            if not _is_nan(row.value):  # the test split is already <task>/<model>/<metric>
                out[f"{row.task}/{row.model}/{metric[row.task]}_{row.split}"] = float(row.value)
    return out
