"""W&B tracking, read back from real offline runs (`wandb leet inspect`, no upload):

- `dvc exp run --queue` / `--temp` run an experiment in a temporary copy of the repository, under
  <repo>/.dvc/tmp/exps/, which DVC deletes afterwards: the W&B runs and their logs/ references go to
  the originating repository, where `python -m pipeline sync --exp NAME` finds them;
- one config per run (as trained: the sized width; no paths, logger or bench sections; not Lightning's
  copy of the hyperparameters as well), one tokens/s series;
- grouped by task (within the DVC experiment), job_type the stage, and a re-run marked as one;
- the git revision is "-dirty" only when code or configs differ from HEAD.
"""
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import project_env
from pipeline import paths
from wandb_records import inspect

REPO = Path(__file__).resolve().parent.parent
EXP = "exp-a"
TRAIN = ["model=lstm", "task=rt", "profile=smoke", "trainer.max_steps=8", "logger.mode=offline"]


def env(**extra) -> dict:
    """A fresh W&B service per process (see test_resume.env), offline, outside any DVC experiment."""
    out = {k: v for k, v in project_env().items() if k not in ("WANDB_SERVICE", "DVC_EXP_NAME")}
    return {**out, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "DVC_NO_ANALYTICS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def run(cmd: list[str], cwd: Path, environ: dict, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)
    assert not check or done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def project_copy(root: Path) -> Path:
    """The code and configs of this project in `root`, with a one-run smoke grid (lstm on rt)."""
    for part in ("pipeline", "conf"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(paths.PARAMS, root / "params.yaml")  # the committed one (conftest)
    run([sys.executable, "-m", "pipeline", "grid", "models=lstm", "tasks=rt", "bench=lstm", "profile=smoke", "seeds=0"],
        root, env())
    return root


@pytest.fixture(scope="module")
def temp_workspace(tmp_path_factory, tokenize):
    """A project (`origin`) and, inside it, a copy where `dvc exp run --queue` runs an experiment
    (<repo>/.dvc/tmp/exps/tmpXXXXXXXX, DVC 3.67 TempDirExecutor). The same training runs there twice
    (a re-run of the stage: `dvc repro -f` deletes its outputs first), as experiment EXP:
    (origin, workspace, [W&B id of each run])."""
    tokenized = tokenize("rt")
    origin = project_copy(tmp_path_factory.mktemp("exp") / "repo")
    workspace = project_copy(origin / ".dvc" / "tmp" / "exps" / "tmpk3x9q2")
    ids = []
    for _ in range(2):
        shutil.rmtree(workspace / "runs", ignore_errors=True)
        run([sys.executable, "-m", "pipeline", "train", *TRAIN, f"paths.tokenized={tokenized}"], workspace,
            env(DVC_EXP_NAME=EXP))
        ids.append(json.loads((origin / "logs" / "exps" / EXP / "rt" / "lstm" / "seed0" / "wandb.json").read_text())["run_id"])
    return origin, workspace, ids


def offline_run(origin: Path, run_id: str) -> Path:
    (found,) = (origin / "wandb").glob(f"offline-run-*-{run_id}")
    return found


@functools.cache
def read_run(origin: Path, run_id: str) -> dict:
    return inspect(offline_run(origin, run_id))


def test_a_temp_workspace_experiment_keeps_its_runs_in_the_originating_repository(temp_workspace):
    origin, workspace, ids = temp_workspace
    assert len(set(ids)) == 2  # a second run, not a resumed one
    for run_id in ids:
        assert (offline_run(origin, run_id) / f"run-{run_id}.wandb").exists()
    logged = json.loads((origin / "logs" / "exps" / EXP / "rt" / "lstm" / "seed0" / "train.json").read_text())
    assert logged["wandb_run_id"] == ids[1] and Path(logged["wandb_dir"]).parent == origin / "wandb"
    assert not (workspace / "wandb").exists() and not (workspace / "logs").exists()  # nothing left to vanish
    assert not (origin / "logs" / "rt").exists()  # the workspace's own logs/<task>/ stay the workspace's


def test_sync_finds_the_runs_of_a_temp_workspace_experiment(temp_workspace):
    """From the originating repository, after the workspace is gone; the re-run superseded the first run."""
    origin, _, ids = temp_workspace
    listed = run([sys.executable, "-m", "pipeline", "sync", "--dry-run", "--exp", EXP], origin, env()).stdout
    assert "1 offline run directories" in listed and f"-{ids[1]}" in listed and ids[0] not in listed
    plain = run([sys.executable, "-m", "pipeline", "sync", "--dry-run"], origin, env(), check=False)
    assert plain.returncode == 2 and f"experiments with runs of their own: {EXP} (upload with --exp NAME)" in plain.stderr
    unknown = run([sys.executable, "-m", "pipeline", "sync", "--dry-run", "--exp", "nope"], origin, env(), check=False)
    assert unknown.returncode == 2 and f"experiments recorded: {EXP}" in unknown.stderr


def test_one_config_as_trained(temp_workspace):
    origin, workspace, ids = temp_workspace
    config = read_run(origin, ids[0])["config"]
    sized = json.loads((workspace / "runs" / "rt" / "lstm" / "train.json").read_text())["seeds"][0]["sizing"]["d_model"]
    assert config["model"]["d_model"] == config["sizing"]["d_model"] == sized
    assert config["params"]["backbone"] > 0 and config["task"]["name"] == "rt" and config["trainer"]["max_steps"] == 8
    # Lightning's save_hyperparameters copy (unsized) and the sections that do not change the result: gone
    assert not {"config", "meta", "paths", "logger", "bench"} & set(config), sorted(config)


def test_runs_are_grouped_by_experiment_and_task_and_a_rerun_is_marked(temp_workspace):
    origin, _, ids = temp_workspace
    first, second = (read_run(origin, run_id) for run_id in ids)
    for info in (first, second):
        assert info["run_group"] == f"{EXP}/rt" and info["job_type"] == "train" and info["name"] == "rt/lstm/seed0"
        assert f"dvc-exp:{EXP}" in info["tags"]
    assert "rerun" not in first["tags"] and "rerun_of" not in first["config"]
    assert "rerun" in second["tags"] and second["config"]["rerun_of"] == ids[0]


def test_one_tokens_per_second_series(temp_workspace):
    origin, _, ids = temp_workspace
    info = read_run(origin, ids[0])
    assert "train/tokens_per_s" in info["history"] and "train/loss" in info["history"]
    # Lightning's ThroughputMonitor (train/device/..., train/samples_per_sec, ...) no longer logs
    assert not [k for k in info["history"] if "per_sec" in k or k.startswith("train/device")], sorted(info["history"])
    logged = json.loads((origin / "logs" / "exps" / EXP / "rt" / "lstm" / "seed0" / "train.json").read_text())
    assert info["summary"]["train/tokens_per_s"] > 0 and "train_tokens_per_s" not in info["summary"]
    second = read_run(origin, ids[1])["summary"]  # train.json is the second run's
    assert second["train/tokens_per_s"] == logged["train_tokens_per_s"]  # the summary: the whole run's rate


def test_run_group_by_task_and_experiment(monkeypatch):
    from pipeline.wandb_mode import run_group

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_group(None, "ptb", "seqarena") == "ptb"
    assert run_group(None, None, "seqarena") == "seqarena"  # the report: no single task
    assert run_group("mine", "ptb", "seqarena") == "mine"
    monkeypatch.setenv("DVC_EXP_NAME", "wispy-bulb")
    assert run_group(None, "ptb", "seqarena") == "wispy-bulb/ptb"
    assert run_group(None, None, "seqarena") == "wispy-bulb"


def test_tracking_root_of_dvc_temp_workspaces(monkeypatch, tmp_path):
    from pipeline import paths

    repo = Path("/home/u/seqarena")
    for workspace in (repo / ".dvc/tmp/exps/tmpab12cd", repo / ".dvc/tmp/exps/standalone/tmpab12cd"):  # --queue, --temp
        assert paths.exp_workspace_origin(workspace) == repo
    assert paths.exp_workspace_origin(repo) is None and paths.exp_workspace_origin(repo / ".dvc/tmp/exps") is None
    monkeypatch.setattr(paths, "ROOT", repo / ".dvc/tmp/exps/tmpab12cd")
    monkeypatch.setenv("DVC_EXP_NAME", "wispy-bulb")
    monkeypatch.delenv(paths.TRACKING_ROOT_ENV, raising=False)
    assert paths.tracking_root() == repo and paths.temp_experiment() == "wispy-bulb"
    monkeypatch.setenv(paths.TRACKING_ROOT_ENV, str(tmp_path))
    assert paths.tracking_root() == tmp_path
    monkeypatch.setattr(paths, "ROOT", repo)
    assert paths.temp_experiment() is None  # a `dvc exp run` in the workspace keeps logs/ where they were


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env=env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


def test_git_sha_is_dirty_only_when_code_or_configs_differ(tmp_path):
    from pipeline.measure.env import git_sha

    for rel in ("pipeline/a.py", "conf/model/x.yaml", "params.yaml", "dvc.lock", "runs/rt/lstm/train.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "x")
    clean = git_sha(tmp_path)
    assert clean and not clean.endswith("-dirty") and clean != "unknown"
    (tmp_path / "runs/rt/lstm/train.json").unlink()  # what DVC does to a stage's outputs before it runs
    (tmp_path / "dvc.lock").write_text("2\n")
    assert git_sha(tmp_path) == clean
    (tmp_path / "conf/model/new.yaml").write_text("1\n")  # a new, not yet added config counts
    assert git_sha(tmp_path) == clean + "-dirty"
    (tmp_path / "conf/model/new.yaml").unlink()
    (tmp_path / "pipeline/a.py").write_text("2\n")
    assert git_sha(tmp_path) == clean + "-dirty"


@pytest.mark.slow
def test_dvc_exp_run_temp_keeps_its_runs(tmp_path, downloads_dir):
    """A real `dvc exp run --temp` of a one-run smoke grid (about 1.5 min on 2 cores): its training run
    (with the test results evaluate added) and its report run are in the repository's wandb/ after DVC
    deleted the temporary workspace, and `sync --exp` lists them."""
    from wandb_records import run_contents

    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for rel in (f for f in files if not f.startswith(("runs/", "reports/", "results/", "docs/", "dvc.lock"))):
        if (REPO / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    shutil.copytree(downloads_dir, repo / "data" / "downloads")  # git-ignored: the drop-in folder, no network
    environ = env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    run([sys.executable, "-m", "pipeline", "grid", "models=lstm", "tasks=rt", "bench=lstm", "profile=smoke", "seeds=0"],
        repo, environ)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"],
                ["dvc", "repro", "tokenize@rt"], ["git", "add", "-A"], ["git", "commit", "-qm", "data"],
                ["dvc", "exp", "run", "--temp", "-n", "tmp-exp", "-S", "seeds=[1]"]):
        run(cmd, repo, environ)
    assert not list((repo / ".dvc" / "tmp" / "exps" / "standalone").glob("tmp*"))  # the workspace is gone
    logs = repo / "logs" / "exps" / "tmp-exp"
    train_id = json.loads((logs / "rt" / "lstm" / "seed1" / "wandb.json").read_text())["run_id"]
    report_id = json.loads((logs / "report" / "wandb.json").read_text())["run_id"]
    summary, _ = run_contents(repo / "wandb", train_id)
    assert "test/acc" in summary and "train/tokens_per_s" in summary  # evaluate resumed the training run
    first = inspect(sorted((repo / "wandb").glob(f"offline-run-*-{train_id}"))[0])
    assert first["run_group"] == "tmp-exp/rt" and first["job_type"] == "train"
    report = inspect(offline_run(repo, report_id))
    assert report["run_group"] == "tmp-exp" and report["job_type"] == "report"
    listed = run([sys.executable, "-m", "pipeline", "sync", "--dry-run", "--exp", "tmp-exp"], repo, environ).stdout
    assert f"-{train_id}" in listed and f"-{report_id}" in listed
