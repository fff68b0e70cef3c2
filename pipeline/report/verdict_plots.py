"""Plots of the verdict section: cost vs length on log-log axes, and quality-vs-cost Pareto fronts."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from pipeline.report.files import save_figure
from pipeline.report.format import _is_nan, fmt_si

# (file stem, column, per-sequence?, y label)
SCALING_PLOTS = (("time_vs_length", "train_s", True, "train step time per sequence (s)"),
                 ("memory_vs_length", "infer_backbone_peak_mb", True, "backbone inference memory per sequence (MB)"),
                 ("decode_vs_context", "decode_latency_ms", False, "latency per generated token (ms)"))
FIXED_BATCH = {"train_s": "train_s_batch1"}  # a column's series at a fixed batch of 1, drawn dashed beside it


def _axes(ncols: int = 1, width: float = 7.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _reference_slopes(ax, xs: np.ndarray, ys: np.ndarray) -> None:
    """Dashed lines of slope 1 and 2 through the geometric middle of the data, for the eye."""
    x0, y0 = math.exp(np.log(xs).mean()), math.exp(np.log(ys).mean())
    span = np.array([xs.min(), xs.max()])
    for k, style in ((1, "--"), (2, ":")):
        ax.plot(span, y0 * (span / x0) ** k, color="grey", linestyle=style, linewidth=1, label=f"slope {k}")


def scaling_plots(table: pd.DataFrame, plots_dir: Path) -> dict[str, Path]:
    """Log-log cost vs n for every benchmarked model, with reference slopes 1 and 2."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, column, per_seq, ylabel in SCALING_PLOTS:
        data = table[(table["status"] == "ok") & table[column].notna()]
        if data.empty:
            continue
        fig, (ax,) = _axes()
        xs, ys = [], []
        for model, g in data.groupby("model", sort=False):
            y = g[column] / g["batch"] if per_seq else g[column]
            (line,) = ax.plot(g["length"], y, marker="o", label=model)
            xs.append(g["length"].to_numpy(float))
            ys.append(y.to_numpy(float))
            key = FIXED_BATCH.get(column)
            fixed = g[g[key].notna()] if key in g else g[:0]
            if len(fixed):  # the same step at batch 1, where the sweep measured it (older results: none)
                ax.plot(fixed["length"], fixed[key], marker=".", linestyle="--", color=line.get_color(),
                        label=f"{model} (batch 1)")
        xs, ys = np.concatenate(xs), np.concatenate(ys)
        positive = ys > 0  # a log axis cannot show 0 MB
        if positive.any():
            _reference_slopes(ax, xs[positive], ys[positive])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n (tokens)" if per_seq else "context length n (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0] + " vs length")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small", ncol=2)
        fig.tight_layout()
        paths[stem] = plots_dir / f"bench_{stem}.png"
        save_figure(fig, paths[stem])
    return paths


def pareto_front(points: list[tuple[str, float, float]], x_higher: bool, y_higher: bool) -> set[str]:
    """Names of the points no other point beats on both axes."""
    def beats(a, b):
        ge_x = a[1] >= b[1] if x_higher else a[1] <= b[1]
        ge_y = a[2] >= b[2] if y_higher else a[2] <= b[2]
        return ge_x and ge_y and (a[1], a[2]) != (b[1], b[2])

    return {p[0] for p in points if not any(beats(q, p) for q in points)}


def pareto_plot(task: str, summary: pd.DataFrame, plots_dir: Path) -> Path | None:
    """Quality vs training throughput and vs peak inference memory, one task; the front is joined."""
    rows = summary[summary["task"] == task]
    if rows.empty:
        return None
    metric, higher = rows["metric"].iloc[0], bool(rows["higher_is_better"].iloc[0])
    fig, axes = _axes(2, width=10.0)
    # the backbone (benchmark cell at the task length) where every model has one: the whole model's
    # embedding and head, sized by the vocabulary, would otherwise decide the memory axis
    backbone = "backbone_mb_per_seq" in rows and rows["backbone_mb_per_seq"].notna().all()
    memory = ("backbone_mb_per_seq", "backbone memory per sequence (MB, benchmark)") \
        if backbone else ("peak_mem_mb", "peak inference memory (MB, at the task length)")
    for ax, column, label, x_higher in ((axes[0], "train_tokens_per_s", "training tokens/s", True),
                                        (axes[1], *memory, False)):
        pts = [(m, float(x), float(y)) for m, x, y in zip(rows["model"], rows[column], rows["value"])
               if not _is_nan(x) and not _is_nan(y)]
        if not pts:
            ax.set_visible(False)
            continue
        front = pareto_front(pts, x_higher, higher)
        for name, x, y in pts:
            ax.scatter([x], [y], s=40, color="C0" if name in front else "grey")
            ax.annotate(name, (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
        line = sorted((p for p in pts if p[0] in front), key=lambda p: p[1])
        ax.plot([p[1] for p in line], [p[2] for p in line], color="C0", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {metric} ({'higher' if higher else 'lower'} is better)")
        ax.grid(alpha=0.3, which="both")
        short = FuncFormatter(lambda v, _p: fmt_si(v) if v >= 1000 else f"{v:g}")  # 12k, 1.5: not 1.2×10^4
        ax.xaxis.set_major_formatter(short)
        ax.xaxis.set_minor_formatter(short)
        ax.tick_params(axis="x", which="both", labelsize="x-small")
    fig.suptitle(f"{task}: quality vs cost (blue: the Pareto front)")
    fig.tight_layout()
    path = plots_dir / f"{task}_pareto.png"
    save_figure(fig, path)
    return path


def quality_throughput_plot(task: str, summary: pd.DataFrame, buckets: pd.DataFrame, bench: list[dict],
                            plots_dir: Path, min_examples: int) -> Path | None:
    """Per length bucket of one task, a panel: test metric (y, 95% interval) against the benchmark's train
    tokens/s at the bucket's upper edge (x, 95% timing interval), one point per model; only buckets with
    enough examples that the sweep also measured. None when there is no such bucket."""
    from pipeline.measure.scaling import Z95
    from pipeline.report.verdict_lengths import costs_at

    rows = buckets[(buckets["task"] == task) & (buckets["count"] >= min_examples)].dropna(subset=["value"])
    panels = []
    for hi, label in rows.drop_duplicates("bucket_hi").sort_values("bucket_hi")[["bucket_hi", "bucket"]].values:
        speed = costs_at(bench, int(hi), "train_tokens_per_s", "train_s")
        here = rows[(rows["bucket_hi"] == hi) & rows["model"].isin(list(speed))]
        if len(here):
            panels.append((label, here, speed))
    if not panels:
        return None
    metric = rows["metric"].iloc[0]
    higher = bool(summary.loc[summary["task"] == task, "higher_is_better"].iloc[0])
    fig, axes = _axes(len(panels), width=max(5.0, 3.6 * len(panels)))
    colors = {m: f"C{i}" for i, m in enumerate(sorted(rows["model"].unique()))}
    for ax, (label, here, speed) in zip(axes, panels):
        for r in here.itertuples(index=False):
            x, sd = speed[r.model]
            y_err = [[r.value - r.lo], [r.hi - r.value]] if not (_is_nan(r.lo) or _is_nan(r.hi)) else None
            ax.errorbar([x], [r.value], yerr=y_err, xerr=[[x - x * math.exp(-Z95 * sd)], [x * math.exp(Z95 * sd) - x]],
                        fmt="o", color=colors[r.model], capsize=2, label=r.model)
            ax.annotate(r.model, (x, r.value), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_si(v)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _p: fmt_si(v)))
        ax.tick_params(axis="x", which="both", labelsize="x-small")
        ax.set_title(f"bucket {label} (n = {int(here['bucket_hi'].iloc[0])})", fontsize="small")
        ax.set_xlabel("train tokens/s (benchmark at n)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"test {metric} ({'higher' if higher else 'lower'} is better)")
    fig.suptitle(f"{task}: quality vs train throughput per length bucket (95% intervals)")
    fig.tight_layout()
    path = plots_dir / f"{task}_quality_vs_throughput.png"
    save_figure(fig, path)
    return path
