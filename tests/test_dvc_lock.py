"""dvc.lock keeps only dvc.yaml's stages (pipeline/dvc_lock.py): stale entries wait in a stash, byte for byte."""
from __future__ import annotations

import subprocess

import yaml

from pipeline import dvc_file, dvc_lock
from pipeline.config import read_params
from tests.conftest import committed

LOCK = """schema: '2.0'
stages:
  download@ptb:
    cmd: python -m pipeline download task=ptb
    outs:
    - path: data/raw/ptb
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
  train@lstm-rt:
    cmd: python -m pipeline train model=lstm task=rt
  report:
    cmd: python -m pipeline report
"""


def load(text: str) -> dict:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["stages"]


def test_stale_entries_move_to_the_stash_and_come_back_with_the_same_bytes(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    stashed, restored = dvc_lock.sync(tmp_path, {"download@ptb", "report"})
    assert (stashed, restored) == (["train@lstm-rt"], [])
    assert "train@lstm-rt" not in (tmp_path / "dvc.lock").read_text()
    assert yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"].keys() == {"download@ptb", "report"}
    assert dvc_lock.sync(tmp_path, {"download@ptb", "report"}) == ([], [])  # nothing to do: files untouched
    stashed, restored = dvc_lock.sync(tmp_path, {"download@ptb", "report", "train@lstm-rt"})
    assert (stashed, restored) == ([], ["train@lstm-rt"])
    back = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert back == yaml.safe_load(LOCK)["stages"]
    assert (tmp_path / dvc_lock.STASH).read_text() == "stages:\n"


def test_the_committed_lock_splits_into_dvcs_own_entries_and_loads_in_dvc(tmp_path):
    """Every entry of the committed lock survives a round trip through the stash unchanged, and the stage
    names `grid` keeps are the ones DVC lists for the committed dvc.yaml."""
    text = committed("dvc.lock")
    original = load(text)
    head, entries = dvc_lock.split(text)
    assert head + "".join(entries.values()) == text
    assert set(entries) == set(original)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    for name in ("dvc.yaml", "params.yaml"):
        (tmp_path / name).write_text(committed(name))
    (tmp_path / "dvc.lock").write_text(text)
    names = dvc_file.stage_names(read_params(tmp_path / "params.yaml"))
    assert names == set(subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=tmp_path, capture_output=True,
                                       text=True, check=True).stdout.split())
    dvc_lock.sync(tmp_path, names)
    kept = load((tmp_path / "dvc.lock").read_text())
    assert set(kept) == names & set(entries)
    assert all(kept[name] == original[name] for name in kept)
    dvc_lock.sync(tmp_path, set(entries))
    assert load((tmp_path / "dvc.lock").read_text()) == original


def test_a_lock_in_another_layout_is_left_to_dvc(tmp_path):
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert dvc_lock.sync(tmp_path, {"report"}) == ([], [])
