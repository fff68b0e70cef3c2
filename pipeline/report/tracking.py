"""W&B logging of the report: one run (job_type "report") holding the tables, plots and headline numbers,
the report itself (report.md + CSVs) as a `report` artifact, and the ids of the training runs it
summarises (config `training_runs`; each of those runs holds its checkpoint as a `model` artifact)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from pipeline.config import ROOT
from pipeline.wandb_mode import resolve_mode, run_group, run_tags


@dataclass
class WandbTarget:
    """Where the report's W&B run goes; `mode` is a logger.mode value (auto is resolved here)."""

    mode: str = "auto"
    project: str = "seqarena"
    group: Optional[str] = None
    dir: Path = ROOT
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    training_runs: list[str] = field(default_factory=list)  # W&B ids of the runs the report summarises
    ref: Optional[Path] = None  # where the run's id is saved for `python -m pipeline sync` (paths.report_wandb_ref)


def log_to_wandb(target: WandbTarget, tables: dict[str, pd.DataFrame], plots: list[Path],
                 flat: dict[str, float], experiment: str = "", files: tuple[Path, ...] = ()) -> Optional[str]:
    """One W&B run with the tables and plot images, and `files` as its `report` artifact; returns its
    run id (None when disabled)."""
    mode = resolve_mode(target.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    Path(target.dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=target.project, entity=target.entity, group=run_group(target.group, None, experiment) or None,
                     job_type="report", name="report", dir=str(target.dir), mode=mode,
                     tags=run_tags(["report", *target.tags]),
                     config={"experiment": experiment, "training_runs": sorted(target.training_runs)})
    try:
        # An empty table (no task with extrapolation splits) says nothing: leave it out.
        payload: dict[str, Any] = {f"{name}_table": wandb.Table(dataframe=_wandb_safe(df))
                                   for name, df in tables.items() if len(df)}
        payload.update({f"plots/{p.stem}": wandb.Image(str(p), caption=p.stem) for p in plots})
        run.log(payload)
        run.summary.update(flat)
        if files:
            artifact = wandb.Artifact(f"report-{run_group(target.group, None, experiment) or 'seqarena'}", type="report",
                                      metadata={"training_runs": sorted(target.training_runs)})
            for path in files:
                artifact.add_file(str(path), name=Path(path).name)
            run.log_artifact(artifact)
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
