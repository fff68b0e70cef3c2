"""`python -m pipeline sync [--dry-run] [--exp NAME ...]`: upload to W&B the offline runs of the current
experiment only: the training runs of params.yaml's `runs` (their ids are in logs/<task>/<model>/seed<k>/wandb.json;
evaluate and measure appended to the same runs) and the latest report run, not every stale run in wandb/.

`--exp NAME`: instead the runs of DVC experiment NAME run by `dvc exp run --queue` / `--temp`, whose
temporary workspace is gone: its W&B runs went to this repository's wandb/ and their ids to
logs/exps/NAME/ (pipeline/paths.py tracking_root)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline import paths
from pipeline.config import load, read_params
from pipeline.schema import ConfigError

USAGE = "usage: python -m pipeline sync [--dry-run] [--exp NAME ...] [key=value ...]"


def training_run_ids(cfg, task: str, model: str) -> list[str]:
    """The W&B ids of one (task, model)'s training runs, one per seed that logged to W&B
    (logs/<task>/<model>/seed<k>/wandb.json); the report lists them too."""
    log_dir = paths.logs_root(cfg) / task / model
    return _ids(sorted(log_dir.glob(f"seed*/{paths.WANDB_RUN}")))


def _ids(refs: list[Path]) -> list[str]:
    return [json.loads(f.read_text())["run_id"] for f in refs]


def workspace_run_ids(cfg) -> tuple[list[str], list[str]]:
    """(W&B ids of params.yaml's runs and the report, grid runs that have no W&B run)."""
    ids, missing = [], []
    for run in (read_params().get("runs") or {}).values():
        found = training_run_ids(cfg, str(run["task"]), str(run["model"]))
        ids += found
        if not found:
            missing.append(f"{run['model']}-{run['task']}")
    report = paths.report_wandb_ref(cfg)
    return ids + _ids([report] if report.exists() else []), missing


def experiment_run_ids(cfg, name: str) -> list[str]:
    """Every W&B id a temp-workspace experiment recorded: its training runs and its report."""
    logs = paths.experiment_logs(cfg, name)
    if not logs.is_dir():
        known = ", ".join(recorded_experiments(cfg)) or "none"
        raise ConfigError(f"no W&B runs of DVC experiment '{name}' under {logs} (experiments recorded: {known})")
    refs = sorted(logs.glob(f"*/*/seed*/{paths.WANDB_RUN}")) + sorted(logs.glob(f"report/{paths.WANDB_RUN}"))
    return _ids(refs)


def recorded_experiments(cfg) -> list[str]:
    root = paths.tracking_root() / cfg.paths.logs / paths.EXP_LOGS
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def offline_dirs(cfg, experiments: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """(offline run directories to upload, grid runs that have no W&B run): of the workspace's
    params.yaml, or of the named temp-workspace experiments."""
    if experiments:
        ids, missing = [i for name in experiments for i in experiment_run_ids(cfg, name)], []
    else:
        ids, missing = workspace_run_ids(cfg)
    wandb_root = paths.wandb_dir(cfg) / "wandb"
    return [d for run_id in ids for d in sorted(wandb_root.glob(f"offline-run-*-{run_id}"))], missing


def parse(argv: list[str]) -> tuple[bool, list[str], list[str]]:
    """(dry run, experiment names, key=value overrides) of the command line."""
    dry, experiments, overrides, rest = False, [], [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--dry-run":
            dry = True
        elif arg == "--exp" and rest:
            experiments.append(rest.pop(0))
        elif arg.startswith("--exp="):
            experiments.append(arg.split("=", 1)[1])
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        else:
            raise ConfigError(f"{USAGE}; not understood: {arg}")
    return dry, experiments, overrides


def main(argv: list[str]) -> int:
    dry, experiments, overrides = parse(argv)
    cfg = load(overrides, model=False)
    dirs, missing = offline_dirs(cfg, experiments)
    if missing:
        print(f"[sync] no W&B run for {', '.join(missing)} (trained with W&B disabled?)", file=sys.stderr)
    others = [name for name in recorded_experiments(cfg) if name not in experiments]
    if others and not experiments:
        print(f"[sync] queued/temp DVC experiments with runs of their own: {', '.join(others)} "
              f"(upload with --exp NAME)", file=sys.stderr)
    which = f"DVC experiment(s) {', '.join(experiments)}" if experiments else "params.yaml's runs"
    if not dirs:
        raise ConfigError(f"no offline W&B runs of {which} under {paths.wandb_dir(cfg) / 'wandb'}; "
                          f"train with logger.mode=offline (the default without a login) first")
    print(f"[sync] {len(dirs)} offline run directories of {which}")
    if dry:
        print("\n".join(paths.relative(d) for d in dirs))
        return 0
    return subprocess.run([sys.executable, "-m", "wandb", "sync", *map(str, dirs)]).returncode
