"""Stage `download`: fetch the task's corpus into `<paths.raw>/<task>/` (logic in pipeline.data)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import ROOT
from pipeline.data.fetch import fetch_corpus


def downloads_dir(cfg: Any) -> Path:
    """Cache and manual drop-in directory for artifacts: `data/downloads/` next to `data/raw/`."""
    return (ROOT / cfg.paths.raw).parent / "downloads"


def main(cfg: Any) -> None:
    dest = ROOT / cfg.paths.raw / cfg.task.name
    record = fetch_corpus(cfg.task.corpus, dest, downloads_dir(cfg))
    for source in record["sources"]:
        print(f"{cfg.task.corpus}: {source['filename']} sha256 {source['sha256']} -> {dest}")
