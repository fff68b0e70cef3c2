"""Stage outputs are written atomically (a temp file of this process, fsynced, renamed): a failed or
killed writer leaves the old file, and its temp file is git- and DVC-ignored. A run folder is locked
by one train or evaluate at a time; the lock names its holder and goes with it."""
import json
import os
import subprocess

import pytest

from pipeline.artifacts import RUN_LOCK, atomic_write, run_folder_lock, temp_path, write_json
from pipeline.config import ROOT
from pipeline.schema import ConfigError


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "train.json"
    write_json(path, {"steps": 1})

    def fails(tmp):
        tmp.write_text('{"steps": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    assert json.loads(path.read_text()) == {"steps": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


def test_temp_names_are_unique_hidden_and_ignored_by_git_and_dvc():
    from dvc.repo import Repo

    last = ROOT / "runs" / "rt" / "lstm" / "ckpt" / "seed0" / "last.ckpt"
    names = {temp_path(last) for _ in range(100)}
    assert len(names) == 100 and all(n.name.startswith(f".last.ckpt.{os.getpid()}.") for n in names)
    ignored = [str(next(iter(names)).relative_to(ROOT)), f"runs/rt/lstm/{RUN_LOCK}"]
    checked = subprocess.run(["git", "check-ignore", *ignored], cwd=ROOT, capture_output=True, text=True)
    assert checked.stdout.split() == ignored
    with Repo(str(ROOT)) as repo:  # inside ckpt/ (a DVC out) and runs/ (the report's dependency)
        assert all(repo.dvcignore.is_ignored_file(str(ROOT / p)) for p in ignored)


def test_a_run_folder_is_held_by_one_process_at_a_time(tmp_path):
    folder = tmp_path / "rt" / "lstm"
    with run_folder_lock(folder):
        assert (folder / RUN_LOCK).read_text().split("\n")[0] == str(os.getpid())
        holder = f"{folder} is in use by pid {os.getpid()} \\(.+\\); one train or evaluate"
        with pytest.raises(ConfigError, match=holder):
            with run_folder_lock(folder):  # another open file: flock refuses it even in this process
                pass
    with run_folder_lock(folder):  # released
        pass
