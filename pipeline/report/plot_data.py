"""The report's plots as data, for DVC: long-format CSVs (one row per model and point) that
dvc.yaml's `plots:` section draws with the templates in .dvc/plots/ (a line per model, a dash
style per revision), so `dvc plots show` / `dvc plots diff <rev>` render interactive comparisons
of the workspace, commits and experiments. The PNGs (pipeline/report/plots.py) stay for the report.

    plot_data/metric_by_bucket/<task>.csv   model, bucket_hi, value, count   (test metric per bucket)
    plot_data/speed_by_length/<task>.csv    model, length, infer_tokens_per_s
    plot_data/learning_curve/<task>.csv     model, step, value   (validation metric; mean over seeds)
    plot_data/train_loss/<task>.csv         model, step, value   (training loss; mean over seeds)
    plot_data/bench_train_time.csv          model, length, train_s            (benchmark sweep)
    plot_data/bench_memory.csv              model, length, infer_backbone_peak_mb
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from pipeline.report.files import write_text


def write_plot_data(tables: dict[str, pd.DataFrame], bench: Optional[pd.DataFrame], out_dir: Path) -> list[Path]:
    root = out_dir / "plot_data"
    written = []

    def write(df: pd.DataFrame, path: Path) -> None:
        write_text(path, df.to_csv(index=False))
        written.append(path)

    buckets = tables["buckets"].dropna(subset=["value"])
    for task, rows in buckets.groupby("task", sort=True):
        write(rows[["model", "bucket_hi", "value", "count"]], root / "metric_by_bucket" / f"{task}.csv")
    speed = tables["speed"].dropna(subset=["infer_tokens_per_s"])
    for task, rows in speed.groupby("task", sort=True):
        write(rows[["model", "length", "infer_tokens_per_s"]], root / "speed_by_length" / f"{task}.csv")
    curves = tables.get("curves")
    if curves is not None and len(curves):
        for split, folder in (("val", "learning_curve"), ("train", "train_loss")):
            rows = curves[curves["split"] == split]
            for task, part in rows.groupby("task", sort=True):
                mean = part.groupby(["model", "step"], sort=False, as_index=False)["value"].mean()
                write(mean[["model", "step", "value"]], root / folder / f"{task}.csv")
    if bench is not None and len(bench):
        ok = bench[bench["status"] == "ok"]
        write(ok[["model", "length", "train_s"]].dropna(), root / "bench_train_time.csv")
        write(ok[["model", "length", "infer_backbone_peak_mb"]].dropna(), root / "bench_memory.csv")
    return written
