"""Where every artifact lives: the one place that builds paths, so writers and readers agree.

    <paths.raw>/<task>/                          download: the corpus as fetched (source.json + files)
    <paths.tokenized>/<task>/                    tokenize: meta.json, tokenizer.json, <split>.*.npy
    <paths.runs>/<task>/<model>/                 train: train.json, curve.csv, ckpt/seed<k>/{best,last}.ckpt
                                                 evaluate: eval.json, metrics.json, examples/
                                                 measure: speed.json
    <paths.logs>/<task>/<model>/seed<k>/         train: wandb.json, train.json (wall time, host, git
                                                 revision): provenance, untracked (not in dvc.lock)
    <paths.bench>/<model>.json                   benchmark: the length sweep of one model
    <paths.reports>/                             report: report.md, CSVs, plots/
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
PARAMS = ROOT / "params.yaml"

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


def log_dir(cfg: Any, seed: int) -> Path:
    return ROOT / cfg.paths.logs / cfg.task.name / cfg.model.name / f"seed{seed}"


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
    return ROOT / cfg.paths.wandb
