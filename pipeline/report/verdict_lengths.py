"""The verdict per length: for every length bucket, the most accurate model of each task (or the tied set)
and the cost leaders from the benchmark (verdict_rows; pipeline/report/verdict.py renders it as the report's
first table), and one verdict per task and bucket with quality and cost side by side (bucket_verdict_rows).

For every bucket of a task that has both a quality number (eval.json, two or more models with enough
examples; a synthetic task's longer test splits fill the buckets its test split leaves empty:
with_length_splits) and benchmark cells at its upper edge n for those models: the most accurate model or the set
statistically tied with it (the report's paired bootstrap, significance.in_bucket), and among that set the
fastest to train, fastest at inference, lowest decode latency and leanest train step, each judged on the
95% interval of the cost ratio (timing spread and run-to-run floor, scaling.ratio_interval; memory is
exact). The verdict then joins the two on train throughput over all of the task's models:

    use X                       X is best or tied in quality and no other model trains resolvedly faster
    X if you need quality, ...  the fastest trainer is resolvedly faster than every model tied for quality
    no cost difference resolved every model's train throughput is within timing noise of the fastest
"""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from pipeline.measure import scaling
from pipeline.report import significance
from pipeline.report.format import MIN_BUCKET_EXAMPLES, _is_nan, fmt_mb, fmt_metric, fmt_si, md_table

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
        runs = len(cell["rounds_ms"]) if "rounds_ms" in cell else cell.get("window")  # older results: one pass
        return scaling.log_sd(cell["latency_ms"], cell.get("latency_iqr_ms"), runs)
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


def with_length_splits(r: dict) -> dict:
    """The run with its longer test splits (a synthetic task's test_2x, test_4x, ...: eval.json's `extrapolation`
    entries that have a length and no pairs count) as the quality of the buckets its test split leaves empty, so
    a task trained at 256 tokens and tested at 512 and 1,024 has verdict rows there. `bucket_split` maps each
    filled bucket to its split, whose per-example outcomes the paired test then uses (significance.in_bucket)."""
    edges = r["buckets"]["edges"]
    splits = [(name, s) for name, s in sorted((r.get("extrapolation") or {}).items())
              if s.get("length") and not s.get("num_pairs") and s.get("overall") is not None]
    if not splits:
        return r
    out = {**r, "per_bucket": list(r["per_bucket"]), "count": list(r["count"]),
           "per_bucket_interval": list(r.get("per_bucket_interval") or [None] * len(edges)), "bucket_split": {}}
    for name, s in splits:
        i = next((k for k, edge in enumerate(edges) if s["length"] <= edge), None)
        if i is None or out["count"][i]:
            continue  # beyond the last bucket, or the test split has examples there: those are the bucket's
        interval = s.get("interval") or {}
        out["per_bucket"][i], out["per_bucket_interval"][i] = float(s["overall"]), interval or None
        out["count"][i] = int(interval.get("n") or s.get("examples") or 0)
        out["bucket_split"][i] = name
    return out


def length_split_bucket_rows(results: list[dict]) -> pd.DataFrame:
    """The buckets that with_length_splits fills, as rows of the report's buckets table (tables.BUCKET_COLUMNS'
    names), for the quality vs throughput panels to show what the verdict table does."""
    rows = []
    for r in results:
        folded = with_length_splits(r)
        for i, split in (folded.get("bucket_split") or {}).items():
            interval = folded["per_bucket_interval"][i] or {}
            rows.append({"task": r["task"], "model": r["model"], "bucket": r["buckets"]["labels"][i],
                         "bucket_hi": int(r["buckets"]["edges"][i]), "unit": r["buckets"].get("unit"),
                         "metric": r["metric"], "value": folded["per_bucket"][i], "count": folded["count"][i],
                         "lo": interval.get("lo"), "hi": interval.get("hi"), "split": split})
    return pd.DataFrame(rows)


def _bucket_interval(r: dict, index: int) -> dict | None:
    return (r.get("per_bucket_interval") or [None] * (index + 1))[index]


def verdict_rows(results: list[dict], bench: list[dict], min_examples: int = MIN_BUCKET_EXAMPLES) -> pd.DataFrame:
    """One row per length (every task bucket edge and every benchmarked length)."""
    results = [with_length_splits(r) for r in results]
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


# ----------------------------------------------------------------------------- quality and cost joined per bucket


# (column, bench key, lower is better, unit, timed quantity for the spread; None: exact)
COSTS = (("fastest to train", "train_tokens_per_s", False, "tok/s", "train_s"),
         ("fastest inference", "infer_tokens_per_s", False, "tok/s", "infer_s"),
         ("lowest decode latency", "decode_latency_ms", True, "ms", "decode"),
         ("leanest (train step)", "train_peak_mb", True, "MB", None))


def costs_at(bench: list[dict], length: int, key: str, timed: Optional[str]) -> dict[str, tuple[float, float]]:
    """{model: (value, sd of its log)} of the benchmark cells at `length` that ran."""
    out = {}
    for r in bench:
        if key == "decode_latency_ms":
            cell = next((c for c in r["decode"].get("cells", []) if c["context"] == length), None)
            if cell and cell["status"] == "ok":
                out[r["model"]] = (cell["latency_ms"], cell_log_sd(cell, "decode"))
            continue
        cell = next((c for c in r["cells"] if c["length"] == length), None)
        if cell and cell["status"] == "ok" and cell.get(key) is not None:
            out[r["model"]] = (cell[key], cell_log_sd(cell, timed) if timed else 0.0)
    return out


def _ratio(costs: dict, better: str, worse: str, lower: bool) -> tuple[float, float, float]:
    """How many times `better` beats `worse` (> 1: better), with its 95% interval."""
    (b, sb), (w, sw) = costs[better], costs[worse]
    return scaling.ratio_interval(*((w, b) if lower else (b, w)), sb, sw)


def leaders(costs: dict, lower: bool) -> list[str]:
    """The cheapest model and every model whose ratio to it is within noise (interval includes 1), cheapest first."""
    ranked = sorted(costs, key=lambda m: (costs[m][0] if lower else -costs[m][0], m))
    if not ranked:
        return []
    return [ranked[0]] + [m for m in ranked[1:] if _ratio(costs, ranked[0], m, lower)[1] <= 1]


def _fmt_value(value: float, unit: str) -> str:
    return f"{fmt_mb(value)} MB" if unit == "MB" else f"{value:.2f} ms" if unit == "ms" else f"{fmt_si(value)} {unit}"


def _cost_cell(costs: dict, models: list[str], lower: bool, unit: str, why: Optional[dict] = None) -> str:
    """The cost leader among `models`: 'X 37k tok/s (1.6× [1.1, 2.3] Y)', 'X ≈ Y (within timing noise)'."""
    mine = {m: v for m, v in costs.items() if m in models}
    if not mine:
        reasons = [f"{m}: {why[m]}" for m in models if why and why.get(m)]
        return "not benchmarked" + (f" ({'; '.join(reasons)})" if reasons else "")
    ranked = sorted(mine, key=lambda m: (mine[m][0] if lower else -mine[m][0], m))
    best = ranked[0]
    if len(ranked) == 1:
        absent = [f"{m}: {(why or {}).get(m) or 'no cell'}" for m in models if m != best]
        return f"{best} {_fmt_value(mine[best][0], unit)}" + (f" ({'; '.join(absent)})" if absent else "")
    runner = ranked[1]
    ratio, lo, hi = _ratio(mine, best, runner, lower)
    span = f"{ratio:.2f}×" if lo == hi else f"{ratio:.2f}× [{lo:.2f}, {hi:.2f}]"
    if lo <= 1:
        return f"{' ≈ '.join(leaders(mine, lower))} (within timing noise; {span})"
    return f"{best} {_fmt_value(mine[best][0], unit)} ({span} {runner})"


def _bucket_quality(task_results: list[dict], length: int, min_examples: int) -> Optional[dict]:
    """The bucket ending at `length`: {"values", "tied", "best", "note", "metric", "lower"}, or None when
    fewer than two models have enough examples there."""
    by_model, index, lower = {}, None, False
    for r in task_results:
        edges = r["buckets"]["edges"]
        if length in edges and r["count"][edges.index(length)] >= min_examples \
                and r["per_bucket"][edges.index(length)] is not None:
            by_model[r["model"]], index, lower = r, edges.index(length), not r["higher_is_better"]
    if len(by_model) < 2:
        return None
    values = {m: float(r["per_bucket"][index]) for m, r in by_model.items()}
    ranked = sorted(values, key=lambda m: (values[m] if lower else -values[m], m))
    best = ranked[0]
    words = {m: significance.in_bucket(by_model[best], by_model[m], index) for m in ranked[1:]}
    interval = (lambda m: (by_model[m].get("per_bucket_interval") or [None] * (index + 1))[index])
    tied = [best] + [m for m in ranked[1:] if words[m] == "tied"
                     and not significance.apart(interval(best), interval(m))]
    runner = ranked[1]
    note = {"not paired": "not paired: tied set unknown", "suggested": "suggested, one seed"}.get(words[runner], "")
    return {"values": values, "tied": tied, "best": best, "note": note, "metric": by_model[best]["metric"],
            "lower": lower}


def _tied_cell(q: dict) -> str:
    v = q["values"]
    text = " ≈ ".join(f"{m} {fmt_metric(v[m])}" for m in q["tied"])
    text += " (tied)" if len(q["tied"]) > 1 else ""
    return text + (f" ({q['note']})" if q["note"] else "")


def _joined_verdict(q: dict, speed: dict) -> str:
    """Quality joined with train throughput over every model of the task that the benchmark ran at n."""
    tied = [m for m in q["tied"] if m in speed]
    models = [m for m in q["values"] if m in speed]
    if not tied:
        return f"no benchmark cell for {', '.join(q['tied'])} in the form this task trained"
    if len(models) == 1:
        return (f"use {' or '.join(q['tied'])} for quality; no speed comparison: only {models[0]} has a benchmark "
                f"cell in the form this task trained")
    fast = leaders({m: speed[m] for m in models}, lower=False)
    if len(fast) == len(models):
        return f"no cost difference resolved (train tok/s within timing noise): use {' or '.join(tied)} for quality"
    both = [m for m in fast if m in tied]
    if both:
        others = [m for m in tied if m not in both]
        why = "tied for most accurate" if len(tied) > 1 else "most accurate"
        why += f" (with {', '.join(others)})" if others and len(both) == 1 else ""
        if fast[0] in both:
            noisy = [m for m in fast if m not in both]
            return (f"use {' or '.join(both)}: {why} and fastest to train"
                    + (f" ({', '.join(noisy)} within timing noise)" if noisy else ""))
        return f"use {' or '.join(both)}: {why}; train speed within timing noise of the fastest ({fast[0]})"
    quick = fast[0]
    quality = max(tied, key=lambda m: speed[m][0])
    loses = abs(q["values"][quick] - q["values"][q["best"]])
    ratio, lo, hi = _ratio(speed, quick, quality, lower=False)
    return (f"{quality} if you need quality, {quick} if you need speed ({quick} loses "
            f"{'+' if q['lower'] else '−'}{fmt_metric(loses, like=q['values'][q['best']])} {q['metric']}; "
            f"trains {ratio:.2f}× [{lo:.2f}, {hi:.2f}] as fast)")


def _reads_left_to_right(r: dict) -> Optional[bool]:
    """Whether a run's model was causal, from its measured receptive field (None when not measured, or in an older
    eval.json whose field is a plain token count)."""
    field = r.get("receptive_field")
    right = field.get("right") if isinstance(field, dict) else None
    return None if right is None else right == 0


def same_form(bench: list[dict], runs: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """(the benchmark entries of the task's models in the form the task trained, {model: why not} for the task's
    models benchmarked only in the other form). The sweep measures the causal form where a backbone has one, and a
    classification trains the bidirectional one (another width, and packed sequences for an RNN), so a causal
    cell would price a model the task never ran."""
    trained = {r["model"]: _reads_left_to_right(r) for r in runs}
    priced, other_form = [], {}
    for b in bench:
        if b["model"] not in trained:
            continue
        causal = trained[b["model"]]
        if causal is None or b.get("causal") is None or b["causal"] == causal:
            priced.append(b)
        else:
            other_form[b["model"]] = f"benchmarked {'causal' if b['causal'] else 'bidirectional'} only"
    return priced, other_form


def bucket_verdict_rows(results: list[dict], bench: list[dict], min_examples: int = MIN_BUCKET_EXAMPLES) -> pd.DataFrame:
    """One row per task and bucket with both quality (two or more models) and benchmark cells at its edge, in
    the form the task trained (same_form): a tied model benchmarked only in its other form says so."""
    columns = ["task", "length", "bucket", "most accurate", *[c for c, *_ in COSTS], "verdict"]
    rows = []
    results = [with_length_splits(r) for r in results]
    for task in sorted({r["task"] for r in results}):
        mine = [r for r in results if r["task"] == task]
        priced, other_form = same_form(bench, mine)
        # a model without a cell says why: benchmarked only in the form this task did not train, or (decoding)
        # its decode status, e.g. "no recurrent form"
        why_decode = {**{r["model"]: str(r["decode"].get("status", "")).split(" (")[0] for r in priced}, **other_form}
        bench_lengths = {c["length"] for r in priced for c in r["cells"]}
        edges = sorted({e for r in mine for e in r["buckets"]["edges"]})
        for n in edges:
            q = _bucket_quality(mine, n, min_examples) if n in bench_lengths else None
            speed = costs_at(priced, n, "train_tokens_per_s", "train_s") if q else {}
            if not q or not any(m in speed for m in q["values"]):
                continue
            row = {"task": task, "length": n, "bucket": bucket_label(n, edges), "most accurate": _tied_cell(q)}
            for column, key, lower, unit, timed in COSTS:
                row[column] = _cost_cell(costs_at(priced, n, key, timed), q["tied"], lower, unit,
                                         why_decode if key == "decode_latency_ms" else other_form)
            row["verdict"] = _joined_verdict(q, {m: v for m, v in speed.items() if m in q["values"]})
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def bucket_verdict_md(rows: pd.DataFrame) -> list[str]:
    if not len(rows):
        return []
    keep = [c for c in rows.columns if c not in ("length",)]
    return ["### Verdict per length bucket: quality and cost side by side", "",
            "For each task's bucket that the benchmark also measured (at its upper edge n, same budget): the most "
            "accurate model, or every model the paired bootstrap cannot tell from it (a synthetic task's buckets "
            "longer than its test split are its longer test splits, models trained shorter: see its length "
            "extrapolation table); among those, the cost leaders, "
            "each with the ratio to the next and its 95% interval (timings: each cell's spread with the run-to-run "
            f"floor, sd {scaling.TIMING_SD:g} in log; memory is exact), 'A ≈ B (within timing noise)' where the "
            "interval includes 1. The verdict joins quality with train throughput over all of the task's models: "
            "'use X' when X is best or tied in quality and no model trains resolvedly faster; 'X if you need "
            "quality, Y if you need speed' when the fastest trainer is resolvedly faster than every model tied "
            "for quality (with what Y loses); 'no cost difference resolved' when every model's train throughput "
            "is within timing noise of the fastest.", "",
            md_table(keep, [[str(r[c]) for c in keep] for r in rows.to_dict("records")], align="l" * len(keep)), ""]

