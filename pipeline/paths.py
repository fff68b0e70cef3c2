"""Where every artifact lives: the one place that builds paths, so writers and readers agree.

    <paths.raw>/<task>/                          download: the corpus as fetched (source.json + files)
    <paths.tokenized>/<task>/                    tokenize: meta.json, tokenizer.json, <split>.*.npy
    <paths.runs>/<task>/<model>/                 train: train.json, curve.csv, ckpt/seed<k>/{best,last}.ckpt
                                                 evaluate: eval.json, metrics.json, examples/
                                                 measure: speed.json
    <paths.logs>/<task>/<model>/seed<k>/         train: wandb.json, train.json (wall time, host, git
                                                 revision): provenance, untracked (not in dvc.lock)
    <paths.logs>/report/wandb.json               report: its W&B run (for `python -m pipeline sync`)
    <paths.bench>/<model>.json                   benchmark: the length sweep of one model
    <paths.reports>/                             report: report.md, CSVs, plots/

paths.wandb and paths.logs hold untracked records and resolve against `tracking_root()`, which is the
project except inside a DVC experiment's temporary workspace (see there); `<paths.logs>/exps/<name>/`
holds such an experiment's logs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
# $SEQARENA_PARAMS: another params.yaml to read instead of the project's. The tests set it to a copy of the
# committed one, so they never read (or, through `grid`, write) the working tree's; a pipeline run leaves it
# unset, as DVC tracks the project's params.yaml.
PARAMS_ENV = "SEQARENA_PARAMS"
PARAMS = Path(os.environ.get(PARAMS_ENV) or ROOT / "params.yaml")

META = "meta.json"
TOKENIZER = "tokenizer.json"
SOURCE = "source.json"
TRAIN_RESULT = "train.json"
CURVE = "curve.csv"
EVAL_RESULT = "eval.json"
SPEED_RESULT = "speed.json"
HEADLINE_METRICS = "metrics.json"
WANDB_RUN = "wandb.json"


def relative(path: str | Path) -> str:
    """Path relative to the project root where it lies inside it (results stay portable)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def raw_dir(cfg: Any) -> Path:
    return ROOT / cfg.paths.raw / cfg.task.name


def downloads_dir(cfg: Any) -> Path:
    """Fetched archives, kept beside data/raw so a re-run does not download again."""
    return (ROOT / cfg.paths.raw).parent / "downloads"


def tokenized_dir(cfg: Any) -> Path:
    return ROOT / cfg.paths.tokenized / cfg.task.name


def runs_dir(cfg: Any) -> Path:
    return ROOT / cfg.paths.runs


def run_dir(cfg: Any) -> Path:
    return runs_dir(cfg) / cfg.task.name / cfg.model.name


def ckpt_dir(cfg: Any, seed: int) -> Path:
    return run_dir(cfg) / "ckpt" / f"seed{seed}"


def best_ckpt(cfg: Any, seed: int) -> Path:
    return ckpt_dir(cfg, seed) / "best.ckpt"


# `dvc exp run --queue` runs an experiment in <repo>/.dvc/tmp/exps/tmpXXXXXXXX, `--temp` in
# <repo>/.dvc/tmp/exps/standalone/tmpXXXXXXXX (DVC 3.67, dvc/repo/experiments/executor/local.py
# TempDirExecutor): a git checkout deleted when the experiment ends, of which only git- and DVC-tracked
# outputs come back, so the untracked W&B runs and logs/ must be written elsewhere.
EXPS_TMP = (".dvc", "tmp", "exps")
TRACKING_ROOT_ENV = "SEQARENA_TRACKING_ROOT"
EXP_LOGS = "exps"


def exp_workspace_origin(root: Path | None = None) -> Path | None:
    """The repository whose DVC experiment temp workspace `root` (default: this project) is; None outside one."""
    parts = (root or ROOT).parts
    for i in range(len(parts) - len(EXPS_TMP)):
        if parts[i:i + len(EXPS_TMP)] == EXPS_TMP:
            return Path(*parts[:i])
    return None


def tracking_root() -> Path:
    """What relative paths.wandb and paths.logs resolve against: $SEQARENA_TRACKING_ROOT if set, else the
    originating repository inside a DVC experiment temp workspace (so its W&B runs outlive the
    workspace and `python -m pipeline sync` there finds them), else the project."""
    if os.environ.get(TRACKING_ROOT_ENV):
        return Path(os.environ[TRACKING_ROOT_ENV]).resolve()
    return exp_workspace_origin() or ROOT


def temp_experiment() -> str | None:
    """The DVC experiment running in this temp workspace (`dvc exp run` sets DVC_EXP_NAME); None outside one."""
    if exp_workspace_origin() is None:
        return None
    return os.environ.get("DVC_EXP_NAME") or ROOT.name


def experiment_logs(cfg: Any, name: str) -> Path:
    """The logs of DVC experiment `name` run in a temp workspace."""
    return tracking_root() / cfg.paths.logs / EXP_LOGS / name


def logs_root(cfg: Any) -> Path:
    """paths.logs; in a temp workspace the experiment's own folder, so experiments run side by side
    (`dvc queue start -j 2`) and the workspace's runs never overwrite each other's wandb.json."""
    name = temp_experiment()
    return experiment_logs(cfg, name) if name else tracking_root() / cfg.paths.logs


def log_dir(cfg: Any, seed: int) -> Path:
    return logs_root(cfg) / cfg.task.name / cfg.model.name / f"seed{seed}"


def wandb_ref(cfg: Any, seed: int) -> Path:
    """The W&B run of one training seed: evaluate and measure resume it, `sync` uploads it."""
    return log_dir(cfg, seed) / WANDB_RUN


def bench_dir(cfg: Any) -> Path:
    return ROOT / cfg.paths.bench


def bench_result(cfg: Any, model: str | None = None) -> Path:
    return bench_dir(cfg) / f"{model or cfg.model.name}.json"


def reports_dir(cfg: Any) -> Path:
    return ROOT / cfg.paths.reports


def wandb_dir(cfg: Any) -> Path:
    """W&B writes <this>/wandb/offline-run-*: one folder for the workspace and every experiment (run
    folders never collide: each is named by its time and id)."""
    return tracking_root() / cfg.paths.wandb


def report_wandb_ref(cfg: Any) -> Path:
    """The report stage's W&B run, for `sync`."""
    return logs_root(cfg) / "report" / WANDB_RUN
