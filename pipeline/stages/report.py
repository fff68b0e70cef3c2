"""report stage: gather every runs/<task>/<model>/eval.json into one comparable report.

Writes into <reports>/:
    report.md        summary, per-bucket and speed/memory tables per task, embedded plots
    summary.csv      one row per task x model
    buckets.csv      long format: task, model, bucket, bucket_hi, metric, value, std, count
    speed.csv        long format: task, model, length, infer_tokens_per_s, latency_ms, peak_mem_mb
    extrapolation.csv long format: task, model, split, length, value, examples (tasks with length-
                     extrapolation splits; header only when there are none)
    summary.json     flat {"<task>/<model>/<key>": number} for `dvc metrics show`
    plots/<task>_{metric_by_bucket,speed_by_length,memory_by_length}.png
and, unless W&B is disabled, one W&B run (job_type "report") holding the same tables and plots.

Seed statistics are recomputed from the per-seed numbers in eval.json (mean and sample std,
ddof=1), so the report never depends on how an older evaluate stage aggregated them.

This module must not import torch: it runs (and is tested) where only the results exist.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd

from pipeline.config import ROOT, Config, read_params
from pipeline.grid import selected_pairs
from pipeline.report import verdict, verdict_plots
from pipeline.report.format import (MD_SPECIALS, SAMPLE_MAX_CHARS, SAMPLES_PER_MODEL, _is_nan, _num, fmt_mb,  # noqa: F401
                                    fmt_metric, fmt_receptive_field, fmt_si, md_table, md_text)
from pipeline.wandb_mode import resolve_mode

SCHEMA_VERSION = 1

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

PLOT_KINDS = ("metric_by_bucket", "speed_by_length", "memory_by_length")

# Dotted keys every eval.json must have (schema_version 1); everything else is optional/nullable.
REQUIRED_KEYS = (
    "task", "task_kind", "model", "metric", "higher_is_better",
    "params.total", "params.backbone", "buckets.edges", "buckets.labels", "seeds", "count",
)
REQUIRED_SEED_KEYS = ("seed", "overall", "per_bucket")


class ReportError(RuntimeError):
    """Missing or malformed results, worded for the user: which file, which key, what to run."""


@dataclass
class WandbTarget:
    """Where the report's W&B run goes; `mode` is a logger.mode value (auto is resolved here)."""

    mode: str = "auto"
    project: str = "seqarena"
    group: Optional[str] = None
    dir: Path = ROOT
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- collect


def collect(runs_dir: Path) -> list[dict]:
    """Read and validate every runs_dir/<task>/<model>/eval.json, sorted by (task, model)."""
    runs_dir = Path(runs_dir)
    paths = sorted(runs_dir.glob("*/*/eval.json"))
    if not paths:
        where = "does not exist" if not runs_dir.exists() else "holds no <task>/<model>/eval.json"
        raise ReportError(
            f"{runs_dir} {where}: nothing to report. Train and evaluate first, e.g. `dvc repro` for the "
            f"whole grid, or `python -m pipeline train task=ptb model=lstm` then "
            f"`python -m pipeline evaluate task=ptb model=lstm`."
        )
    results = [load_result(p) for p in paths]
    _check_tasks_consistent(results)
    return results


def load_result(path: Path) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e}); re-run the evaluate stage for this run") from e
    validate(result, path)
    result["_path"] = str(path)
    return result


def validate(result: Any, path: Path | str) -> None:
    """Raise ReportError naming the file and the offending key."""
    if not isinstance(result, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level")
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path}: key 'schema_version' is {version!r}, this report reads schema_version "
                          f"{SCHEMA_VERSION}; re-run the evaluate stage (or update pipeline/stages/report.py)")
    for key in REQUIRED_KEYS:
        if _get(result, key) is None:
            raise ReportError(f"{path}: missing key '{key}' (eval.json schema_version {SCHEMA_VERSION})")
    n = len(result["buckets"]["edges"])
    _check_len(path, "buckets.labels", result["buckets"]["labels"], n)
    _check_len(path, "count", result["count"], n)
    if not result["seeds"]:
        raise ReportError(f"{path}: key 'seeds' is empty; evaluate wrote no per-seed results")
    for i, seed in enumerate(result["seeds"]):
        for key in REQUIRED_SEED_KEYS:
            if not isinstance(seed, dict) or seed.get(key) is None:
                raise ReportError(f"{path}: missing key 'seeds[{i}].{key}'")
        _check_len(path, f"seeds[{i}].per_bucket", seed["per_bucket"], n)
    speed = result.get("speed")
    if speed:
        for key in ("lengths", "infer_tokens_per_s"):
            if speed.get(key) is None:
                raise ReportError(f"{path}: missing key 'speed.{key}'")
        for key in ("infer_tokens_per_s", "latency_ms", "peak_mem_mb"):
            if speed.get(key) is not None:
                _check_len(path, f"speed.{key}", speed[key], len(speed["lengths"]))


def _check_len(path: Path | str, key: str, value: Any, n: int) -> None:
    if not isinstance(value, list) or len(value) != n:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise ReportError(f"{path}: key '{key}' should be a list of {n} (one per bucket/length), got {got}")


def _check_tasks_consistent(results: list[dict]) -> None:
    """All models of a task must share the metric and its direction, or the tables are meaningless."""
    first: dict[str, dict] = {}
    for r in results:
        ref = first.setdefault(r["task"], r)
        for key in ("metric", "higher_is_better"):
            if r[key] != ref[key]:
                raise ReportError(f"task '{r['task']}': {r['_path']} has {key}={r[key]!r} but "
                                  f"{ref['_path']} has {key}={ref[key]!r}; re-evaluate both with the same code")


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


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


def build_tables(results: list[dict]) -> dict[str, pd.DataFrame]:
    """{"summary", "buckets", "speed", "extrapolation"} DataFrames; models within a task are ranked
    best first."""
    summary = pd.DataFrame([_summary_row(r) for r in results])
    summary = _rank(summary)
    order = {(t, m): i for i, (t, m) in enumerate(zip(summary["task"], summary["model"]))}
    by_order = sorted(results, key=lambda r: order[(r["task"], r["model"])])
    buckets = pd.DataFrame([row for r in by_order for row in _bucket_rows(r)], columns=BUCKET_COLUMNS)
    speed = pd.DataFrame([row for r in by_order for row in _speed_rows(r)], columns=SPEED_COLUMNS)
    extrapolation = pd.DataFrame([row for r in by_order for row in _extrapolation_rows(r)],
                                 columns=EXTRAPOLATION_COLUMNS)
    return {"summary": summary, "buckets": buckets, "speed": speed, "extrapolation": extrapolation}


def _summary_row(r: dict) -> dict:
    mean, std, n = mean_std(s["overall"] for s in r["seeds"])
    base_name, base = _baseline(r)
    train_tps, _, _ = mean_std((s.get("train") or {}).get("train_tokens_per_s") for s in r["seeds"])
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
        "baseline_name": base_name, "baseline": base,
        "at_chance": at_chance(mean, base, r["higher_is_better"], r["metric"]),
        "train_tokens_per_s": train_tps,
        "infer_tokens_per_s": infer_tps, "infer_length": infer_len,
        "peak_mem_mb": _at_length((r.get("speed") or {}), "peak_mem_mb", infer_len),
        "speed_batch_size": (r.get("speed") or {}).get("batch_size"),
        "device": env.get("device"), "git_sha": env.get("git_sha"), "torch": env.get("torch"),
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


BUCKET_COLUMNS = ["task", "model", "bucket", "bucket_hi", "unit", "metric", "value", "std", "n_seeds", "count"]
SPEED_COLUMNS = ["task", "model", "length", "infer_tokens_per_s", "latency_ms", "peak_mem_mb", "batch_size", "device"]
EXTRAPOLATION_COLUMNS = ["task", "model", "split", "length", "value", "examples"]


def _bucket_rows(r: dict) -> list[dict]:
    b = r["buckets"]
    rows = []
    for i, (label, hi) in enumerate(zip(b["labels"], b["edges"])):
        mean, std, n = mean_std(s["per_bucket"][i] for s in r["seeds"])
        rows.append({"task": r["task"], "model": r["model"], "bucket": label, "bucket_hi": int(hi),
                     "unit": b.get("unit"), "metric": r["metric"], "value": mean, "std": std, "n_seeds": n,
                     "count": int(r["count"][i] or 0)})
    return rows


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
    """The test split at the trained length, then each extrapolation split (test_2x, test_4x, ...)."""
    splits = r.get("extrapolation") or {}
    if not splits:
        return []
    test_overall, _, _ = mean_std(s["overall"] for s in r["seeds"])
    # The generator makes every extrapolation split as large as the test split (synthetic.split_sizes).
    examples = next((s.get("examples") for s in splits.values() if s.get("examples") is not None), None)
    rows = [{"split": "test", "length": trained_length(r), "value": test_overall, "examples": examples}]
    rows += [{"split": name, "length": s.get("length"), "value": _num(s.get("overall")), "examples": s.get("examples")}
             for name, s in sorted(splits.items(), key=lambda kv: _num(kv[1].get("length")))]
    return [{"task": r["task"], "model": r["model"], **row} for row in rows]


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


# ----------------------------------------------------------------------------- plots


def plot_task(task: str, tables: dict[str, pd.DataFrame], plots_dir: Path) -> dict[str, Path]:
    """The three per-task PNGs; returns {kind: path}."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    summary = tables["summary"][tables["summary"]["task"] == task]
    buckets = tables["buckets"][tables["buckets"]["task"] == task]
    speed = tables["speed"][tables["speed"]["task"] == task]
    models = list(summary["model"])
    metric = summary["metric"].iloc[0]
    paths = {kind: plots_dir / f"{task}_{kind}.png" for kind in PLOT_KINDS}
    _plot_metric_by_bucket(task, metric, summary, buckets, models, paths["metric_by_bucket"])
    device, bsz = speed["device"].dropna(), speed["batch_size"].dropna()
    where = f"batch {int(bsz.iloc[0])}, {device.iloc[0]}" if len(device) and len(bsz) else ""
    _plot_by_length(speed, models, "infer_tokens_per_s", "inference tokens/s",
                    f"{task}: inference throughput by length ({where})", paths["speed_by_length"])
    _plot_by_length(speed, models, "peak_mem_mb", "peak memory (MB)",
                    f"{task}: peak inference memory by length ({where})", paths["memory_by_length"])
    return paths


def _new_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _plot_metric_by_bucket(task: str, metric: str, summary: pd.DataFrame, buckets: pd.DataFrame,
                           models: list[str], path: Path) -> None:
    import numpy as np

    fig, ax = _new_axes()
    for model in models:
        b = buckets[(buckets["model"] == model)].dropna(subset=["value"])
        x = np.log2(b["bucket_hi"].to_numpy(dtype=float))
        ax.plot(x, b["value"], marker="o", label=model)
        if b["std"].notna().any():
            ax.fill_between(x, b["value"] - b["std"].fillna(0), b["value"] + b["std"].fillna(0), alpha=0.15)
    base = summary["baseline"].dropna()
    if len(base):
        name = summary["baseline_name"].dropna()
        ax.axhline(base.iloc[0], color="grey", linestyle="--", linewidth=1,
                   label=f"baseline ({name.iloc[0] if len(name) else 'chance'})")
    ticks = buckets.drop_duplicates("bucket_hi").sort_values("bucket_hi")
    ax.set_xticks(np.log2(ticks["bucket_hi"].to_numpy(dtype=float)), ticks["bucket"], rotation=30)
    unit = buckets["unit"].dropna()
    ax.set_xlabel(f"bucket ({unit.iloc[0] if len(unit) else 'length'}; log2 of upper edge)")
    better = "higher" if bool(summary["higher_is_better"].iloc[0]) else "lower"
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.set_title(f"{task}: test {metric} by length bucket")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def _plot_by_length(speed: pd.DataFrame, models: list[str], column: str, ylabel: str, title: str,
                    path: Path) -> None:
    from matplotlib.ticker import NullLocator

    fig, ax = _new_axes()
    for model in models:
        s = speed[speed["model"] == model].dropna(subset=[column])
        ax.plot(s["length"], s[column], marker="o", label=model)
    ax.set_xscale("log", base=2)
    lengths = sorted(speed["length"].unique())
    ax.set_xticks(lengths, [str(n) for n in lengths])  # 16, 32, ... rather than 2^4, 2^5
    ax.xaxis.set_minor_locator(NullLocator())
    values = speed[column].dropna()
    # A memory of 0 (nothing allocated) cannot go on a log axis: log scale only when every value is positive.
    if len(values) and (values > 0).all():
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        si = FuncFormatter(lambda v, _pos: fmt_si(v))  # 50k, 1.2M rather than 5x10^4
        ax.yaxis.set_major_formatter(si)
        # Label minor ticks only when the data spans under ~1.5 decades (else labels collide).
        narrow = math.log10(values.max() / values.min()) < 1.5
        ax.yaxis.set_minor_formatter(si if narrow else FuncFormatter(lambda v, _pos: ""))
    ax.set_xlabel("sequence length (tokens, log2)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if ax.get_lines():
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


# ----------------------------------------------------------------------------- markdown


def render_markdown(results: list[dict], tables: dict[str, pd.DataFrame], plots: dict[str, dict[str, Path]],
                    out_dir: Path, experiment: str = "", verdict_section: Optional[list[str]] = None) -> str:
    title = f"# seqarena report{f' — {experiment}' if experiment else ''}"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [title, "", f"Generated {now} from {len(results)} evaluated runs. {_env_line(results)}", "",
             *(verdict_section or []), _how_to_read(tables), ""]
    for task in tables["summary"]["task"].unique():
        task_results = [r for r in results if r["task"] == task]
        parts += _task_section(task, task_results, tables, plots.get(task, {}), out_dir)
    return "\n".join(parts).rstrip() + "\n"


def _env_line(results: list[dict]) -> str:
    """Env fingerprint; several values are listed (mixed runs are worth noticing)."""
    def values(key: str) -> str:
        found = sorted({str((r.get("env") or {}).get(key)) for r in results if (r.get("env") or {}).get(key)})
        return ", ".join(found) if found else "unknown"

    cpu = values("cpu")
    return (f"Environment: git `{values('git_sha')}` · torch {values('torch')} · device {values('device')}"
            + (f" · CPU {cpu}" if cpu != "unknown" else "") + (f" · threads {values('threads')}"
                                                               if values("threads") != "unknown" else "") + ".")


def _how_to_read(tables: dict[str, pd.DataFrame]) -> str:
    speed = tables["speed"]
    bsz = ", ".join(sorted({str(int(b)) for b in speed["batch_size"].dropna()})) or "?"
    dev = ", ".join(sorted({str(d) for d in speed["device"].dropna()})) or "?"
    return (
        "## How to read this\n\n"
        "Metrics are on the test split, mean ± sample std over training seeds (n = number of seeds). "
        "**Buckets** split the test set by length: for language modelling a bucket is a range of "
        "*context positions* (how many tokens the model has seen before predicting), for classification "
        "it is the *document length* in tokens; the `examples` row gives how many predictions (LM: tokens, "
        "classification: documents) each cell averages over, and `—` means no examples. "
        "The **baseline** is a chance-level reference computed from the data (unigram perplexity for LM, "
        f"majority-class accuracy for classification). **{AT_CHANCE}** marks models not clearly better than it: "
        f"for lower-is-better metrics mean ≥ {1 - CHANCE_REL_MARGIN:.1f} × baseline (less than "
        f"{CHANCE_REL_MARGIN:.0%} better); for higher-is-better metrics mean ≤ baseline + "
        f"{CHANCE_ABS_MARGIN:g} (on a 0–1 scale; + {CHANCE_ABS_MARGIN * 100:g} points for 0–100 metrics). "
        "Backbone params exclude embeddings and the output head (which depend on the vocabulary); "
        "FLOPs/token is the forward pass at the task's full length. "
        "**Receptive field** is how many input positions measurably influence an output, measured on the "
        "trained backbone at the length in brackets (`full` = all of them). "
        "**Translation** is scored on the decoded test set with sacreBLEU (corpus BLEU and chrF, 0–100, "
        "signature given per task); its baseline is the BLEU of copying the source. "
        "**Length extrapolation** (synthetic tasks) evaluates models trained at one length on test sets "
        "generated at 2× and 4× that length, without truncation. "
        f"**Speed** is inference throughput (tokens/s) of a forward pass at batch size {bsz} on {dev}, "
        "median over repeats; **memory** is the peak of live tensor bytes on CPU or max allocated memory on CUDA "
        "during that forward pass; `—` means not measured (out of memory or skipped). "
        "Train tokens/s counts unpadded tokens over training-step time, averaged over seeds."
    )


def _task_section(task: str, results: list[dict], tables: dict[str, pd.DataFrame], plots: dict[str, Path],
                  out_dir: Path) -> list[str]:
    summary = tables["summary"][tables["summary"]["task"] == task]
    first = summary.iloc[0]
    metric, better = first["metric"], ("higher" if first["higher_is_better"] else "lower")
    out = [f"## Task `{task}` ({first['task_kind']}; {metric}, {better} is better)", ""]
    reference = next((r.get("reference") for r in results if r.get("reference")), None)
    if reference:
        out += [f"Published reference: {reference}", ""]
    if not _is_nan(first["baseline"]):
        out += [f"Chance-level baseline: {first['baseline_name']} {metric} {fmt_metric(first['baseline'])}.", ""]
    out += ["### Summary", "", _summary_md(summary), ""]
    out += _translation_md(results, list(summary["model"]))
    extrapolation = tables["extrapolation"][tables["extrapolation"]["task"] == task]
    if len(extrapolation):
        out += ["### Length extrapolation", "",
                f"Test {metric} at the training length and on splits generated longer, evaluated untruncated:", "",
                _extrapolation_md(extrapolation, summary), ""]
    out += [f"### {metric} per length bucket", "",
            _buckets_md(tables["buckets"][tables["buckets"]["task"] == task], summary), ""]
    out += _image(plots.get("metric_by_bucket"), f"{task} {metric} by bucket", out_dir)
    speed = tables["speed"][tables["speed"]["task"] == task]
    if len(speed):
        out += ["### Speed & memory", "", "Inference tokens/s by sequence length:", "",
                _by_length_md(speed, summary, "infer_tokens_per_s", fmt_si), "",
                "Peak memory (MB) by sequence length:", "",
                _by_length_md(speed, summary, "peak_mem_mb", fmt_mb), ""]
        out += _image(plots.get("speed_by_length"), f"{task} speed by length", out_dir)
        out += _image(plots.get("memory_by_length"), f"{task} memory by length", out_dir)
    return out


def _image(path: Optional[Path], alt: str, out_dir: Path) -> list[str]:
    if path is None:
        return []
    return [f"![{alt}]({Path(os.path.relpath(path, out_dir)).as_posix()})", ""]


def _summary_md(summary: pd.DataFrame) -> str:
    metric = summary["metric"].iloc[0]
    with_chrf = bool(summary["chrf"].notna().any())  # translation tasks
    header = ["model", "backbone params", "total params", "FLOPs/token", "receptive field",
              f"{metric} (mean ± std)", *(["chrF"] if with_chrf else []), "seeds",
              "baseline", "vs baseline", "train tok/s", "infer tok/s (at length)"]
    rows = []
    for r in summary.itertuples(index=False):
        value = fmt_metric(r.value) + ("" if _is_nan(r.std) else f" ± {fmt_metric(r.std, like=r.value)}")
        infer = "—" if r.infer_length is None or _is_nan(r.infer_length) else \
            f"{fmt_si(r.infer_tokens_per_s)} ({int(r.infer_length)})"
        rf = fmt_receptive_field(r.receptive_field, r.receptive_field_measured_at, r.receptive_field_full)
        rows.append([r.model, fmt_si(r.params_backbone), fmt_si(r.params_total), fmt_si(r.flops_per_token), rf,
                     value, *([fmt_metric(r.chrf)] if with_chrf else []), str(r.n_seeds), fmt_metric(r.baseline),
                     AT_CHANCE if r.at_chance else "", fmt_si(r.train_tokens_per_s), infer])
    return md_table(header, rows, align="lrrrrr" + "r" * with_chrf + "rrlrr")


def _translation_md(results: list[dict], models: list[str]) -> list[str]:
    """sacreBLEU signature, decoding settings and sample translations; nothing for other tasks."""
    by_model = {r["model"]: r for r in results}
    ordered = [by_model[m] for m in models if m in by_model]
    if not any(r.get("bleu_signature") or r.get("decoding") or r.get("samples") for r in ordered):
        return []
    out = [_per_model_line("sacreBLEU signature", ordered, lambda r: r.get("bleu_signature"), code=True), "",
           _per_model_line("Decoding", ordered, lambda r: fmt_decoding(r.get("decoding"))), ""]
    out += ["### Sample translations", ""]
    rows = [[r["model"], str(i + 1), md_text(s.get("source")), md_text(s.get("reference")),
             md_text(s.get("hypothesis"))]
            for r in ordered for i, s in enumerate((r.get("samples") or [])[:SAMPLES_PER_MODEL])]
    out += [md_table(["model", "#", "source", "reference", "hypothesis"], rows, align="lrlll") if rows
            else "No sample translations in eval.json.", ""]
    return out


def _per_model_line(label: str, results: list[dict], value, code: bool = False) -> str:
    """'label: v' when every model agrees (the usual case), else one 'model: v' per model."""
    shown = {r["model"]: value(r) or "—" for r in results}
    quote = (lambda v: f"`{v}`" if code and v != "—" else v)
    if len(set(shown.values())) == 1:
        return f"{label}: {quote(next(iter(shown.values())))}."
    return f"{label}: " + "; ".join(f"{m} {quote(v)}" for m, v in shown.items()) + "."


def fmt_decoding(decoding: Optional[dict]) -> Optional[str]:
    """{"beam_size": 1, "examples": 1565} -> 'greedy, 1565 test sentences'; other keys as 'key value'."""
    if not decoding:
        return None
    rest = dict(decoding)
    beam, examples = rest.pop("beam_size", None), rest.pop("examples", None)
    parts = [] if beam is None else ["greedy" if beam == 1 else f"beam search (beam {beam})"]
    parts += [] if examples is None else [f"{examples} test sentences"]
    parts += [f"{k} {v}" for k, v in rest.items()]
    return ", ".join(parts)


def _extrapolation_md(extrapolation: pd.DataFrame, summary: pd.DataFrame) -> str:
    """model x length (train, 2x, 4x, ...), with an examples row."""
    cols = extrapolation.drop_duplicates("split")[["split", "length"]].values.tolist()
    cols.sort(key=lambda c: _num(c[1]))
    header = ["model \\ length", *[_extrapolation_label(split, length) for split, length in cols]]
    cell = {(m, s): v for m, s, v in zip(extrapolation["model"], extrapolation["split"], extrapolation["value"])}
    rows = [[m, *[fmt_metric(cell.get((m, s))) for s, _ in cols]]
            for m in summary["model"] if m in set(extrapolation["model"])]
    examples = {s: sorted({str(int(e)) for e in g.dropna()}) for s, g in extrapolation.groupby("split")["examples"]}
    rows.append(["examples", *["/".join(examples.get(s) or ["—"]) for s, _ in cols]])
    return md_table(header, rows)


def _extrapolation_label(split: str, length: Any) -> str:
    """'128 (train)', '256 (2×)' from the split names the tokenizer writes (test, test_<k>x)."""
    n = "?" if _is_nan(_num(length)) else str(int(length))
    if split == "test":
        return f"{n} (train)"
    factor = split.removeprefix("test_").removesuffix("x")
    return f"{n} ({factor}×)" if factor.isdigit() else f"{n} ({split})"


def _buckets_md(buckets: pd.DataFrame, summary: pd.DataFrame) -> str:
    labels = buckets.drop_duplicates("bucket_hi").sort_values("bucket_hi")
    cols = list(zip(labels["bucket_hi"], labels["bucket"]))
    unit = buckets["unit"].dropna()
    header = [f"model \\ {unit.iloc[0] if len(unit) else 'bucket'}", *[label for _, label in cols]]
    cell = {(m, hi): v for m, hi, v in zip(buckets["model"], buckets["bucket_hi"], buckets["value"])}
    rows = [[m, *[fmt_metric(cell.get((m, hi))) for hi, _ in cols]] for m in summary["model"]]
    counts = buckets.groupby("bucket_hi")["count"].agg(lambda c: sorted(set(c)))
    if all(len(counts[hi]) == 1 for hi, _ in cols):
        rows.append(["examples", *[str(counts[hi][0]) for hi, _ in cols]])
    else:  # models evaluated on different example sets: show every model's counts
        per = {(m, hi): c for m, hi, c in zip(buckets["model"], buckets["bucket_hi"], buckets["count"])}
        rows += [[f"examples ({m})", *[str(per.get((m, hi), "—")) for hi, _ in cols]] for m in summary["model"]]
    return md_table(header, rows)


def _by_length_md(speed: pd.DataFrame, summary: pd.DataFrame, column: str, fmt) -> str:
    lengths = sorted(speed["length"].unique())
    cell = {(m, n): v for m, n, v in zip(speed["model"], speed["length"], speed[column])}
    rows = [[m, *[fmt(cell.get((m, n))) for n in lengths]] for m in summary["model"]]
    return md_table(["model \\ length", *[str(n) for n in lengths]], rows)


# ----------------------------------------------------------------------------- write


def write_report(results: list[dict], out_dir: Path, *, experiment: str = "",
                 wandb: Optional[WandbTarget] = None, bench: Optional[list[dict]] = None,
                 bench_missing: Iterable[str] = ()) -> dict[str, Path]:
    """Write every report artifact into out_dir; log to W&B unless `wandb` is None or resolves to
    disabled. `bench`: the benchmark stage's results (the verdict section). Returns {artifact name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(results)
    plots = {task: plot_task(task, tables, out_dir / "plots") for task in tables["summary"]["task"].unique()}
    bench = bench or []
    verdict_plots_ = verdict_plots.scaling_plots(verdict.bench_table(bench), out_dir / "plots") if bench else {}
    for task in tables["summary"]["task"].unique():
        path = verdict_plots.pareto_plot(task, tables["summary"], out_dir / "plots")
        if path is not None:
            verdict_plots_[f"pareto_{task}"] = path
    tables.update(bench=verdict.bench_table(bench), complexity=verdict.complexity_rows(bench, results),
                  crossover=verdict.crossover_rows(bench), verdict=verdict.verdict_rows(results, bench))
    written: dict[str, Path] = {}
    for name, df in tables.items():
        written[f"{name}.csv"] = out_dir / f"{name}.csv"
        df.to_csv(written[f"{name}.csv"], index=False)
    flat = {**flat_metrics(tables["summary"], tables["extrapolation"]), **verdict.headline(bench)}
    written["summary.json"] = out_dir / "summary.json"
    written["summary.json"].write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    written["report.md"] = out_dir / "report.md"
    section = verdict.verdict_md(results, bench, list(bench_missing), verdict_plots_, out_dir)
    written["report.md"].write_text(render_markdown(results, tables, plots, out_dir, experiment, section))
    written.update({p.name: p for p in verdict_plots_.values()})
    for task, paths in plots.items():
        written.update({p.name: p for p in paths.values()})
    if wandb is not None:
        log_to_wandb(wandb, tables, [p for paths in plots.values() for p in paths.values()]
                     + list(verdict_plots_.values()), flat, experiment)
    return written


def log_to_wandb(target: WandbTarget, tables: dict[str, pd.DataFrame], plots: list[Path],
                 flat: dict[str, float], experiment: str = "") -> Optional[str]:
    """One W&B run with the tables and plot images; returns its run id (None when disabled)."""
    mode = resolve_mode(target.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    Path(target.dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=target.project, entity=target.entity, group=target.group or experiment or None,
                     job_type="report", name="report", dir=str(target.dir), mode=mode,
                     tags=["report", *target.tags], config={"experiment": experiment})
    try:
        # An empty table (no task with extrapolation splits) says nothing: leave it out.
        payload: dict[str, Any] = {f"{name}_table": wandb.Table(dataframe=_wandb_safe(df))
                                   for name, df in tables.items() if len(df)}
        payload.update({f"plots/{p.stem}": wandb.Image(str(p), caption=p.stem) for p in plots})
        run.log(payload)
        run.summary.update(flat)
        return run.id
    finally:
        run.finish()


def _wandb_safe(df: pd.DataFrame) -> pd.DataFrame:
    """wandb.Table infers one type per column: make object columns plain strings ('' for missing)."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: "" if v is None else str(v))
    return df


def main(cfg: Config) -> None:
    runs_dir, out_dir = ROOT / cfg.paths.runs, ROOT / cfg.paths.reports
    try:
        results = collect(runs_dir)
    except ReportError as e:
        raise SystemExit(f"report: {e}") from None
    # Only the runs of the current grid: runs/ may still hold results of an earlier, wider grid.
    wanted = selected_pairs(read_params())
    if wanted is not None:
        stale = sorted(f"{r['task']}/{r['model']}" for r in results if (r["task"], r["model"]) not in wanted)
        results = [r for r in results if (r["task"], r["model"]) in wanted]
        if stale:
            print(f"[report] leaving out runs outside params.yaml's runs: {', '.join(stale)}")
        if not results:
            raise SystemExit(f"report: no run of params.yaml's runs has an eval.json under {runs_dir}; run `dvc repro`")
    target = WandbTarget(mode=cfg.logger.mode, project=cfg.logger.project, group=cfg.logger.group or cfg.experiment,
                         dir=ROOT / cfg.paths.wandb, entity=cfg.logger.entity, tags=list(cfg.logger.tags))
    params = read_params()
    bench_models = [str(m) for m in params["bench"]] if "bench" in params else None
    try:
        bench, missing = verdict.load_bench(ROOT / cfg.paths.bench, bench_models)
    except verdict.BenchResultError as e:
        raise SystemExit(f"report: {e}") from None
    if missing:
        print(f"[report] no benchmark result for {', '.join(missing)}: run `dvc repro benchmark@<model>`")
    written = write_report(results, out_dir, experiment=cfg.experiment, wandb=target, bench=bench,
                           bench_missing=missing)
    tasks = sorted({r["task"] for r in results})
    print(f"[report] {len(results)} runs over {len(tasks)} tasks ({', '.join(tasks)}) -> "
          f"{written['report.md'].relative_to(ROOT) if written['report.md'].is_relative_to(ROOT) else written['report.md']}")
