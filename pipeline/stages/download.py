"""Stage `download`: fetch the task's corpus into `<paths.raw>/<task>/` (logic in pipeline.data)."""
from __future__ import annotations

from typing import Any

from pipeline import paths
from pipeline.data.fetch import fetch_corpus

NEEDS_MODEL = False


def main(cfg: Any) -> None:
    # data/downloads/ beside data/raw/: the cache, and where a user drops an artifact by hand
    dest = paths.raw_dir(cfg)
    record = fetch_corpus(cfg.task.corpus, dest, paths.downloads_dir(cfg))
    for source in record["sources"]:
        print(f"[download] {cfg.task.corpus}: {source['filename']} sha256 {source['sha256']} -> {paths.relative(dest)}")
