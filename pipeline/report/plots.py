"""The report's per-task matplotlib plots: metric by length bucket, speed and memory by length, and the
learning curves (where the runs have curve.csv). `dvc plots show/diff` shows these PNGs (dvc.yaml).

Drawn on a Figure with an Agg canvas (no pyplot global state, no display needed), one PNG per
kind in PLOT_KINDS under <reports>/plots/.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.report.files import save_figure

from pipeline.report.format import MIN_BUCKET_EXAMPLES, fmt_si

PLOT_KINDS = ("metric_by_bucket", "speed_by_length", "memory_by_length")


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
    if "backbone_mb_per_seq" in speed and speed["backbone_mb_per_seq"].notna().any():
        _plot_by_length(speed, models, "backbone_mb_per_seq", "backbone peak memory per sequence (MB)",
                        f"{task}: backbone inference memory by length (benchmark cells)", paths["memory_by_length"])
    else:
        _plot_by_length(speed, models, "peak_mem_mb", "peak memory (MB)",
                        f"{task}: peak inference memory by length ({where})", paths["memory_by_length"])
    extra = tables["extrapolation"]
    pairs = extra[(extra["task"] == task) & (extra["sweep"] == "pairs")] if "sweep" in extra else extra.iloc[:0]
    if len(pairs):
        paths["recall_vs_pairs"] = plots_dir / f"{task}_recall_vs_pairs.png"
        _plot_recall_vs_pairs(task, metric, pairs, models, paths["recall_vs_pairs"])
    curves = tables["curves"]
    curves = curves[curves["task"] == task] if "task" in curves else curves.iloc[:0]
    if len(curves):
        paths["learning_curve"] = plots_dir / f"{task}_learning_curve.png"
        _plot_learning_curve(task, curves, models, paths["learning_curve"])
    return paths


def _plot_learning_curve(task: str, curves: pd.DataFrame, models: list[str], path: Path):
    """Training loss and validation metric by step, one line per model (the mean over seeds), side by side;
    the figure comes back for tests."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    for ax, split in zip(fig.subplots(1, 2), ("train", "val")):
        rows = curves[curves["split"] == split]
        name = rows["metric"].iloc[0] if len(rows) else ""
        for model in models:
            mean = rows[rows["model"] == model].groupby("step")["value"].mean()
            if len(mean):
                ax.plot(mean.index, mean.to_numpy(), marker="o" if split == "val" else None, label=model)
        label = "training loss" if split == "train" else f"validation {name}"
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.set_title(f"{task}: {label} (mean over seeds)")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _plot_recall_vs_pairs(task: str, metric: str, pairs: pd.DataFrame, models: list[str], path: Path):
    """Zoology's view: accuracy against the number of key-value pairs at one length, per model, with
    95% intervals as bars and the no-recall floor measured on each split."""
    import numpy as np

    fig, ax = _new_axes()
    for model in models:
        rows = pairs[pairs["model"] == model].dropna(subset=["value"]).sort_values("num_pairs")
        if not len(rows):
            continue
        x, y = rows["num_pairs"].to_numpy(dtype=float), rows["value"].to_numpy(dtype=float)
        lo, hi = rows["lo"].fillna(rows["value"]).to_numpy(float), rows["hi"].fillna(rows["value"]).to_numpy(float)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=model)
    ks = np.array(sorted(pairs["num_pairs"].dropna().unique()), dtype=float)
    floor = pairs.dropna(subset=["num_pairs", "chance"]).groupby("num_pairs")["chance"].first()
    ax.plot(floor.index.to_numpy(float), floor.to_numpy(float), color="grey", linestyle="--", linewidth=1,
            label="no-recall floor (measured)")
    trained = pairs.loc[pairs["split"] == "test", "num_pairs"].dropna()
    if len(trained):
        ax.axvline(float(trained.iloc[0]), color="grey", linestyle=":", linewidth=1, label="trained at")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    length = pairs["length"].dropna()
    ax.set_xlabel(f"key-value pairs per sequence (length {int(length.iloc[0]) if len(length) else '?'})")
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{task}: recall vs number of pairs")
    return _finish(fig, ax, path)


def _finish(fig, ax, path: Path):
    """Grid, legend, layout, PNG; the axes come back for tests."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    return ax


def _new_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _plot_metric_by_bucket(task: str, metric: str, summary: pd.DataFrame, buckets: pd.DataFrame,
                           models: list[str], path: Path):
    import numpy as np

    fig, ax = _new_axes()
    few_label = f"fewer than {MIN_BUCKET_EXAMPLES} examples: not a finding"
    for model in models:
        every = buckets[(buckets["model"] == model)].dropna(subset=["value"])
        small = every["count"].fillna(0) < MIN_BUCKET_EXAMPLES
        b = every[~small]  # the line, its band and its markers: buckets with enough examples only
        x = np.log2(b["bucket_hi"].to_numpy(dtype=float))
        line = ax.plot(x, b["value"], marker="o", label=model)[0]
        if small.any():  # the rest as hollow, faded markers (and one legend entry for all of them)
            ax.plot(np.log2(every.loc[small, "bucket_hi"].to_numpy(dtype=float)), every.loc[small, "value"],
                    linestyle="none", marker="o", markerfacecolor="none", color=line.get_color(), alpha=0.45,
                    label=few_label)
            few_label = None
        if b["lo"].notna().any():  # 95% interval (bootstrap over test examples, or across seeds)
            ax.fill_between(x, b["lo"].fillna(b["value"]), b["hi"].fillna(b["value"]), alpha=0.15)
        elif b["std"].notna().any():
            ax.fill_between(x, b["value"] - b["std"].fillna(0), b["value"] + b["std"].fillna(0), alpha=0.15)
    base = summary["baseline"].dropna()
    if len(base):
        name = summary["baseline_name"].dropna()
        ax.axhline(base.iloc[0], color="grey", linestyle="--", linewidth=1,
                   label=f"baseline ({name.iloc[0] if len(name) else 'chance'})")
    ticks = buckets.groupby(["bucket_hi", "bucket"], as_index=False)["count"].min().sort_values("bucket_hi")
    ax.set_xticks(np.log2(ticks["bucket_hi"].to_numpy(dtype=float)),  # each bucket with its example count
                  [f"{b}\nn={int(c)}" if c == c else b for b, c in zip(ticks["bucket"], ticks["count"])],
                  rotation=30, fontsize="small")
    unit = buckets["unit"].dropna()
    ax.set_xlabel(f"bucket ({unit.iloc[0] if len(unit) else 'length'}; log2 of upper edge)")
    better = "higher" if bool(summary["higher_is_better"].iloc[0]) else "lower"
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.set_title(f"{task}: test {metric} by length bucket")
    return _finish(fig, ax, path)


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
    save_figure(fig, path)
