"""The same inputs give byte-identical data artifacts, so DVC's hashes (and dvc.lock) do not change
when a fresh clone runs download and tokenize again: no fetch time, no host, no random order."""
import hashlib
from pathlib import Path

import pytest

from conftest import TEST_TASKS
from pipeline.config import load
from pipeline.data.fetch import fetch_corpus
from pipeline.stages.tokenize import tokenize_task


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", ["rt", "mqar"])
def test_download_and_tokenize_twice_give_identical_bytes(tmp_path, downloads_dir, task):
    cfg = load([f"task={task}", "profile=smoke", *TEST_TASKS[task]], model=False)
    runs = []
    for attempt in ("a", "b"):
        raw, tok = tmp_path / attempt / "raw", tmp_path / attempt / "tok"
        fetch_corpus(cfg.task.corpus, raw, downloads_dir)
        tokenize_task(cfg.task, raw, tok)
        runs.append((digests(raw), digests(tok)))
    assert runs[0] == runs[1]
    assert "source.json" in runs[0][0] and "meta.json" in runs[0][1]
