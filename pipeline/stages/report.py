"""report stage: gather every runs/<task>/<model>/eval.json into one comparable report.

The stage picks the runs of params.yaml's grid and the benchmark results of its `bench`, then
hands them to pipeline.report.write.write_report (which lists the artifacts it writes into
<reports>/). The parts live in pipeline/report/: collect (finding and validating eval.json),
tables, plots, markdown, tracking (W&B) and verdict.

This module must not import torch: it runs (and is tested) where only the results exist.
"""
from __future__ import annotations

import json

from pipeline import paths
from pipeline.config import ROOT, Config, read_params
from pipeline.grid import selected_pairs
from pipeline.report import verdict
from pipeline.report.collect import ReportError, collect
from pipeline.report.files import write_text
from pipeline.report.tracking import WandbTarget
from pipeline.report.write import write_report
from pipeline.sync import training_run_ids

NEEDS_MODEL = False
GRID_METRICS = "metrics.json"  # reports/metrics.json: dvc.yaml's report metrics


def write_grid_metrics(results: list[dict], path) -> dict:
    """Every run's test metric in one file, {"<task>/<model>": value}, so `dvc exp show` names a column
    `ptb/lstm` instead of `runs/ptb/lstm/metrics.json:test` and a grid of 7 runs fits in 120 columns (the
    slash also tells these columns from params). Each run's own metrics.json keeps its interval and the
    settings that give the number its meaning."""
    grid = {f"{r['task']}/{r['model']}": float(f"{r['overall']:.4g}")  # 252.6, 0.997: narrow columns
            for r in sorted(results, key=lambda r: (r["task"], r["model"]))}
    write_text(path, json.dumps(grid, indent=2) + "\n")
    return grid


def main(cfg: Config) -> None:
    runs_dir, out_dir = ROOT / cfg.paths.runs, ROOT / cfg.paths.reports
    # Only the runs of the current grid: runs/ may still hold results of an earlier, wider grid
    wanted = selected_pairs(read_params())
    results = collect(runs_dir, wanted)  # a ReportError reaches the CLI: one line naming the file, exit 2
    if wanted is not None:
        missing = sorted(f"{t}/{m}" for t, m in wanted - {(r["task"], r["model"]) for r in results})
        if missing:
            raise ReportError(f"no eval.json for {', '.join(missing)} of params.yaml's runs under {runs_dir}: "
                              f"run `dvc repro` (or `dvc repro evaluate@<model>-<task>`)")
    target = WandbTarget(mode=cfg.logger.mode, project=cfg.logger.project, group=cfg.logger.group,
                         dir=paths.wandb_dir(cfg), entity=cfg.logger.entity, tags=list(cfg.logger.tags),
                         training_runs=[i for r in results for i in training_run_ids(cfg, r["task"], r["model"])],
                         ref=paths.report_wandb_ref(cfg))
    params = read_params()
    bench_models = [str(m) for m in params["bench"]] if "bench" in params else None
    bench, missing = verdict.load_bench(ROOT / cfg.paths.bench, bench_models)
    if missing:
        print(f"[report] no benchmark result for {', '.join(missing)}: run `dvc repro benchmark@<model>`")
    written = write_report(results, out_dir, experiment=cfg.experiment, wandb=target, bench=bench,
                           bench_missing=missing)
    write_grid_metrics(results, out_dir / GRID_METRICS)
    tasks = sorted({r["task"] for r in results})
    print(f"[report] {len(results)} runs over {len(tasks)} tasks ({', '.join(tasks)}) -> "
          f"{written['report.md'].relative_to(ROOT) if written['report.md'].is_relative_to(ROOT) else written['report.md']}")
