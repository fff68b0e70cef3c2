"""Faults round two, data integrity: the tokenize stage records a blake2b checksum of every split
array in meta.json; opening a split for training/evaluation verifies it (once per process per file)
and checks every token id against meta.json's vocab_size. A mismatch is one ArtifactError naming the
file and `dvc repro tokenize@<task>`; an older meta.json without checksums still loads."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.artifacts import ArtifactError
from pipeline.config import load
from pipeline.data import arrays
from pipeline.data.datamodule import SequenceData
from conftest import REPO, TEST_TASKS


@pytest.fixture()
def ptb(tmp_path, tokenize):
    """A private copy of the real tokenized ptb (the session's copy stays intact) and its config."""
    root = tmp_path / "tokenized"
    shutil.copytree(tokenize("ptb") / "ptb", root / "ptb")
    arrays._VERIFIED.clear()
    cfg = load(["task=ptb", "profile=smoke", f"paths.tokenized={root}", *TEST_TASKS["ptb"]], model=False)
    return cfg, root / "ptb"


def test_tokenize_records_a_checksum_of_every_array_and_clean_data_loads(ptb):
    cfg, directory = ptb
    meta = json.loads((directory / "meta.json").read_text())
    assert set(meta["checksums"]) == {p.name for p in directory.glob("*.npy")}
    assert meta["checksums"]["test.ids.npy"] == arrays.file_digest(directory / "test.ids.npy")
    start = time.monotonic()
    assert len(SequenceData(cfg).split("test")) > 0
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("task", sorted(TEST_TASKS))
def test_every_kinds_intact_splits_pass_the_checks(task, tokenize):
    """No false alarm: every split of every kind's freshly tokenized task verifies (checksums + id range)."""
    directory = tokenize(task) / task
    meta = json.loads((directory / "meta.json").read_text())
    names = {n.split(".")[0] for n in meta["checksums"]}
    assert names >= {"train", "val", "test"}
    for split in sorted(names):
        arrays.verify_split(directory, split, meta)


def test_same_size_zeroed_test_ids_are_refused(ptb):
    cfg, directory = ptb
    path = directory / "test.ids.npy"
    ids = np.load(path)
    np.save(path, np.zeros_like(ids))  # same size, same format: only the checksum can tell
    with pytest.raises(ArtifactError) as e:
        SequenceData(cfg).split("test")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "dvc repro tokenize@ptb" in msg and "checksum" in msg
    from pipeline.measure.task_batch import test_stream  # the measure stage's test tokens: the same check
    with pytest.raises(ArtifactError, match="checksum"):
        test_stream(cfg)


def test_an_id_beyond_the_vocabulary_is_refused(ptb):
    cfg, directory = ptb
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    path = directory / "test.ids.npy"
    ids = np.load(path)
    ids[len(ids) // 2] = meta["vocab_size"]  # one past the last id: an IndexError in the embedding
    np.save(path, ids)
    meta["checksums"]["test.ids.npy"] = arrays.file_digest(path)  # checksum consistent: the range check catches it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=rf"test\.ids\.npy holds token id {meta['vocab_size']}, outside .*"
                                           r"dvc repro tokenize@ptb"):
        SequenceData(cfg).split("test")


def test_an_old_meta_without_checksums_still_loads(ptb):
    cfg, directory = ptb
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["checksums"]
    meta_path.write_text(json.dumps(meta))
    path = directory / "test.ids.npy"
    ids = np.load(path)
    ids[0] = (ids[0] + 1) % meta["vocab_size"]  # changed, in range: nothing recorded to check against
    np.save(path, ids)
    assert len(SequenceData(cfg).split("test")) > 0


def test_evaluate_refuses_zeroed_test_ids_in_one_line_exit_2(tmp_path, tokenize):
    """The real stages: train a tiny model on intact data, zero the test ids (same size), then
    `python -m pipeline evaluate` exits 2 with one line naming the file and the stage to re-run
    (before this check it reported a perplexity/accuracy computed on the zeroed ids)."""
    from tests.test_resume import ARGS, env

    root = tmp_path / "tokenized"
    shutil.copytree(tokenize("rt") / "rt", root / "rt")
    args = [*ARGS, "trainer.max_steps=10", "trainer.val_check_interval=null", f"paths.runs={tmp_path / 'runs'}",
            f"paths.logs={tmp_path / 'logs'}", f"paths.tokenized={root}", f"paths.wandb={tmp_path}",
            "logger.mode=disabled"]
    subprocess.run([sys.executable, "-m", "pipeline", "train", *args], cwd=REPO, env=env(), check=True,
                   capture_output=True, timeout=600)
    path = root / "rt" / "test.ids.npy"
    np.save(path, np.zeros_like(np.load(path)))
    done = subprocess.run([sys.executable, "-m", "pipeline", "evaluate", *args], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=600)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert str(path) in lines[0] and "dvc repro tokenize@rt" in lines[0]
    assert not (tmp_path / "runs" / "rt" / "lstm" / "eval.json").exists()
