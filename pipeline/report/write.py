"""Every report artifact, written into <reports>/ from collected results and benchmark results:

    report.md        summary, per-bucket and speed/memory tables per task, embedded plots
    summary.csv      one row per task x model
    buckets.csv      long format: task, model, bucket, bucket_hi, metric, value, std, count
    speed.csv        long format: task, model, length, infer_tokens_per_s, latency_ms, peak_mem_mb (measure
                     stage, whole model), backbone_mb_per_seq (the benchmark's cell at that length)
    extrapolation.csv long format: task, model, sweep (length | pairs), split, length, num_pairs, value,
                     lo, hi, examples, chance (synthetic tasks' extra test splits; header only when none)
    summary.json     flat {"<task>/<model>/<key>": number} for W&B and scripts
    plot_data/       the plots as long-format CSVs for `dvc plots show/diff` (pipeline.report.plot_data)
    plots/<task>_{metric_by_bucket,speed_by_length,memory_by_length}.png
    bench.csv, complexity.csv, crossover.csv, verdict.csv, bucket_verdict.csv and plots/ scaling, Pareto and
                     <task>_quality_vs_throughput PNGs (one panel per length bucket): the verdict
                     section's tables and plots (pipeline.report.verdict, pipeline.report.verdict_plots)
and, unless W&B is disabled, one W&B run (job_type "report") holding the same tables and plots.

Seed statistics are recomputed from the per-seed numbers in eval.json (mean and sample std,
ddof=1), so the report never depends on how an older evaluate stage aggregated them.

This module must not import torch: it runs (and is tested) where only the results exist.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from pipeline.report.files import write_text
from pipeline.report.format import MIN_BUCKET_EXAMPLES
from pipeline.report import significance, verdict, verdict_plots
from pipeline.report.markdown import render_markdown
from pipeline.report.plots import plot_task
from pipeline.report.tables import add_bench_memory, build_tables, flat_metrics, summary_backbone_memory
from pipeline.report.plot_data import write_plot_data
from pipeline.report.tracking import WandbTarget, log_to_wandb
from pipeline.report.verdict_lengths import length_split_bucket_rows

def write_report(results: list[dict], out_dir: Path, *, experiment: str = "",
                 wandb: Optional[WandbTarget] = None, bench: Optional[list[dict]] = None,
                 bench_missing: Iterable[str] = ()) -> dict[str, Path]:
    """Write every report artifact into out_dir; log to W&B unless `wandb` is None or resolves to
    disabled. `bench`: the benchmark stage's results (the verdict section). Returns {artifact name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in results:  # every interval of the report is of one estimand (significance.ESTIMAND)
        significance.one_estimand(r)
    tables = build_tables(results)
    bench = bench or []
    tables["speed"] = add_bench_memory(tables["speed"], verdict.bench_table(bench))
    tables["summary"] = summary_backbone_memory(tables["summary"], tables["speed"])
    plots = {task: plot_task(task, tables, out_dir / "plots") for task in tables["summary"]["task"].unique()}
    verdict_plots_ = verdict_plots.scaling_plots(verdict.bench_table(bench), out_dir / "plots") if bench else {}
    # the buckets a longer test split fills count in the quality vs throughput panels, as in the verdict table
    split_buckets = length_split_bucket_rows(results)
    with_split_buckets = pd.concat([tables["buckets"], split_buckets], ignore_index=True) if len(split_buckets) \
        else tables["buckets"]
    for task in tables["summary"]["task"].unique():
        path = verdict_plots.pareto_plot(task, tables["summary"], out_dir / "plots")
        if path is not None:
            verdict_plots_[f"pareto_{task}"] = path
        path = verdict_plots.quality_throughput_plot(task, tables["summary"], with_split_buckets, bench,
                                                     out_dir / "plots", MIN_BUCKET_EXAMPLES)
        if path is not None:
            verdict_plots_[f"quality_vs_throughput_{task}"] = path
    tables.update(bench=verdict.bench_table(bench), complexity=verdict.complexity_rows(bench, results),
                  crossover=verdict.crossover_rows(bench), verdict=verdict.verdict_rows(results, bench),
                  bucket_verdict=verdict.bucket_verdict_rows(results, bench))
    written: dict[str, Path] = {}
    for name, df in tables.items():
        written[f"{name}.csv"] = out_dir / f"{name}.csv"
        write_text(written[f"{name}.csv"], df.to_csv(index=False))
    for path in write_plot_data(tables, tables["bench"], out_dir):
        written[f"plot_data/{path.relative_to(out_dir / 'plot_data')}"] = path
    flat = {**flat_metrics(tables["summary"], tables["extrapolation"]), **verdict.headline(bench)}
    written["summary.json"] = out_dir / "summary.json"
    write_text(written["summary.json"], json.dumps(flat, indent=2, sort_keys=True) + "\n")
    written["report.md"] = out_dir / "report.md"
    section = verdict.verdict_md(results, bench, list(bench_missing), verdict_plots_, out_dir)
    write_text(written["report.md"], render_markdown(results, tables, plots, out_dir, experiment, section))
    written.update({p.name: p for p in verdict_plots_.values()})
    for task, paths in plots.items():
        written.update({p.name: p for p in paths.values()})
    if wandb is not None:
        run_id = log_to_wandb(wandb, tables, [p for paths in plots.values() for p in paths.values()]
                              + list(verdict_plots_.values()), flat, experiment,
                              files=tuple(p for name, p in written.items() if name.endswith((".md", ".csv", ".json"))
                                          and "/" not in name))
        if run_id and wandb.ref is not None:  # for `python -m pipeline sync`; untracked, not in the (hashed) report
            Path(wandb.ref).parent.mkdir(parents=True, exist_ok=True)
            write_text(Path(wandb.ref), json.dumps({"run_id": run_id}) + "\n")
    return written
