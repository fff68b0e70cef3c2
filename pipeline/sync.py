"""`python -m pipeline sync [--dry-run]`: upload to W&B the offline runs of the current experiment
only: the training runs of params.yaml's `runs` (their ids are in logs/<task>/<model>/seed<k>/wandb.json;
evaluate and measure appended to the same runs) and the latest report run, not every stale run in wandb/."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline import paths
from pipeline.config import load, read_params
from pipeline.schema import ConfigError


def training_run_ids(cfg, task: str, model: str) -> list[str]:
    """The W&B ids of one (task, model)'s training runs, one per seed that logged to W&B
    (logs/<task>/<model>/seed<k>/wandb.json); the report lists them too."""
    log_dir = paths.ROOT / cfg.paths.logs / task / model
    return [json.loads(f.read_text())["run_id"] for f in sorted(log_dir.glob(f"seed*/{paths.WANDB_RUN}"))]


def offline_dirs(cfg) -> tuple[list[Path], list[str]]:
    """(offline run directories to upload, grid runs that have no W&B run)."""
    wandb_root = paths.wandb_dir(cfg) / "wandb"
    ids, missing = [], []
    for run in (read_params().get("runs") or {}).values():
        found = training_run_ids(cfg, str(run["task"]), str(run["model"]))
        ids += found
        if not found:
            missing.append(f"{run['model']}-{run['task']}")
    report = wandb_root / "report-run.json"
    if report.exists():
        ids.append(json.loads(report.read_text())["run_id"])
    return [d for run_id in ids for d in sorted(wandb_root.glob(f"offline-run-*-{run_id}"))], missing


def main(argv: list[str]) -> int:
    stray = [a for a in argv if a != "--dry-run"]
    cfg = load([a for a in stray if "=" in a], model=False)
    if [a for a in stray if "=" not in a]:
        raise ConfigError(f"usage: python -m pipeline sync [--dry-run] [key=value ...]; not understood: {stray}")
    dirs, missing = offline_dirs(cfg)
    if missing:
        print(f"[sync] no W&B run for {', '.join(missing)} (trained with W&B disabled?)", file=sys.stderr)
    if not dirs:
        raise ConfigError(f"no offline W&B runs of params.yaml's runs under {paths.wandb_dir(cfg) / 'wandb'}; "
                          f"train with logger.mode=offline (the default without a login) first")
    print(f"[sync] {len(dirs)} offline run directories of the current experiment")
    if "--dry-run" in argv:
        print("\n".join(paths.relative(d) for d in dirs))
        return 0
    return subprocess.run([sys.executable, "-m", "wandb", "sync", *map(str, dirs)]).returncode
