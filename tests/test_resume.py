"""A killed training run loses nothing: SIGKILL after its first last.ckpt, the same command again
continues from there (optimizer, scheduler, sampler position, RNG) in the same W&B run, and ends
with exactly the numbers of a run that was never interrupted, and the stage's DVC outputs with exactly
its bytes (dvc.lock does not change). SIGTERM (timeouts, preemption), Ctrl-C
and the death of the process that started the trainer (dvc killed) exit non-zero with a resumable
checkpoint and say so in one line. A seed that finished is kept, not trained again; a second train
or evaluate of a run folder in use stops at once; evaluate refuses a training that did not finish;
a checkpoint holding more than tensors is refused, never unpickled."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.artifacts import RUN_LOCK
from pipeline.config import ROOT

ARGS = ["model=lstm", "task=rt", "profile=smoke", "data.max_train_examples=null", "trainer.max_steps=40",
        "trainer.val_check_interval=10", "trainer.last_ckpt_every_n_steps=4", "model.dropout=0.3"]


def command(tmp: Path, runs: str, tokenized: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "train", *ARGS, f"paths.runs={tmp / runs}", f"paths.logs={tmp / runs}-logs",
            f"paths.tokenized={tokenized}", f"paths.wandb={tmp}", "logger.mode=offline"]


def provenance(run: Path) -> dict:
    """What the train stage logged outside its DVC outputs: <runs>-logs/<task>/<model>/seed0/train.json."""
    return json.loads((run.parent.parent.parent / f"{run.parent.parent.name}-logs" / "rt" / "lstm" / "seed0"
                       / "train.json").read_text())


def env() -> dict:
    """Each process starts its own W&B service: an in-process W&B run elsewhere in the test session
    exports WANDB_SERVICE, and a killed child's run would stay "in use" in that shared service."""
    out = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**out, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path.name} appeared"
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def weights(run: Path) -> dict:
    return torch.load(run / "ckpt" / "seed0" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def last_ckpt(run: Path, seed: int = 0) -> Path:
    """A run folder's resumable state: <runs>-logs/<task>/<model>/seed<k>/last.ckpt (not a DVC output)."""
    runs = run.parent.parent
    return runs.parent / f"{runs.name}-logs" / run.parent.name / run.name / f"seed{seed}" / "last.ckpt"


def training_state(last: Path) -> dict:
    """The LastCheckpoint state of a last.ckpt (fingerprint, RNG) and its step."""
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("LastCheckpoint"))
    return {**state, "global_step": checkpoint["global_step"]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(name: str, tmp: Path, runs: str, tokenized: Path, *extra: str) -> list[str]:
    """`python -m pipeline <name>` on the run folder of command(tmp, runs, tokenized), W&B off."""
    return [sys.executable, "-m", "pipeline", name, *ARGS, f"paths.runs={tmp / runs}", f"paths.logs={tmp / runs}-logs",
            f"paths.tokenized={tokenized}", "logger.mode=disabled", *extra]


def stage(name: str, tmp: Path, runs: str, tokenized: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(name, tmp, runs, tokenized, *extra), cwd=ROOT, env=env(), capture_output=True, text=True)


def seed_entries(run: Path) -> list[dict]:
    """train.json's seeds, without best_ckpt (a path: it names the run's folder)."""
    seeds = json.loads((run / "train.json").read_text())["seeds"]
    return [{k: v for k, v in s.items() if k != "best_ckpt"} for s in seeds]


def one_line(stream: str) -> str:
    lines = stream.strip().splitlines()
    assert len(lines) == 1, stream[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tokenized_root):
    tmp = tmp_path_factory.mktemp("resume")
    subprocess.run(command(tmp, "full", tokenized_root), cwd=ROOT, env=env(), check=True, capture_output=True)
    return tmp / "full" / "rt" / "lstm"


def test_sigkill_then_rerun_continues_the_same_run_to_the_same_numbers(tmp_path, tokenized_root, uninterrupted):
    cmd = command(tmp_path, "killed", tokenized_root)
    run = tmp_path / "killed" / "rt" / "lstm"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(last_ckpt(run), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "train.json").exists()
    first_id = json.loads((tmp_path / "killed-logs" / "rt" / "lstm" / "seed0" / "wandb.json").read_text())["run_id"]
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout
    resumed = json.loads((run / "train.json").read_text())["seeds"][0]
    full = json.loads((uninterrupted / "train.json").read_text())["seeds"][0]
    assert provenance(run)["resumed"] and not provenance(uninterrupted)["resumed"]
    assert resumed["steps"] == full["steps"] == 40
    assert resumed["best_val"] == full["best_val"]
    assert resumed["train_tokens"] == full["train_tokens"]  # the sampler skipped exactly what was trained
    assert provenance(run)["wandb_run_id"] == first_id  # the same W&B run continued, no duplicate
    a, b = weights(run), weights(uninterrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    assert not last_ckpt(run).exists()  # the resumable state goes once the seed finished
    assert {k: v for k, v in resumed.items() if k != "best_ckpt"} == \
        {k: v for k, v in full.items() if k != "best_ckpt"}  # train.json holds no time, id or "resumed"


def train_outputs(run: Path) -> dict[str, str]:
    """sha256 of every file of the train stage's DVC outputs (as dvc_file.py declares them) in `run`."""
    from pipeline.dvc_file import DVC_YAML

    stage = __import__("yaml").safe_load(DVC_YAML.read_text())["stages"]["train"]["do"]
    declared = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    outs = [run / o.removeprefix("runs/${item.task}/${item.model}/") for o in declared]
    files = [f for o in outs for f in (sorted(p for p in o.rglob("*") if p.is_file()) if o.is_dir() else [o])]
    return {str(f.relative_to(run)): digest(f) for f in files}


def test_sigterm_then_resume_gives_the_uninterrupted_runs_bytes(tmp_path, tokenized_root):
    """SIGTERM at a step exits 143 with one resumable checkpoint; the same command again ends with every
    DVC output of the train stage byte for byte an uninterrupted run's, in the same folder (paths are in
    the checkpoints' config), so dvc.lock is unchanged and evaluate/measure are not re-run."""
    cmd = cli("train", tmp_path, "bytes", tokenized_root)
    run = tmp_path / "bytes" / "rt" / "lstm"
    subprocess.run(cmd, cwd=ROOT, env=env(), check=True, capture_output=True)
    full = train_outputs(run)
    assert {"ckpt/seed0/best.ckpt", "ckpt/seed0/result.json", "train.json", "curve.csv"} <= full.keys(), full
    shutil.rmtree(tmp_path / "bytes")
    shutil.rmtree(tmp_path / "bytes-logs")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(last_ckpt(run), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out[-1000:], err[-2000:])
    line = one_line(err)
    assert "terminated (SIGTERM) at step" in line and "to continue from there" in line
    assert 0 < stopped_at(line) < 40 and not (run / "train.json").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr[-2000:]
    assert train_outputs(run) == full


def test_a_finished_run_is_kept_and_a_reconfigured_one_starts_over(tmp_path, tokenized_root, uninterrupted):
    run = tmp_path / "copy" / "rt" / "lstm"
    shutil.copytree(uninterrupted, run)
    best = run / "ckpt" / "seed0" / "best.ckpt"
    before = digest(best)
    again = subprocess.run(command(tmp_path, "copy", tokenized_root), cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0 and "kept: trained to the end earlier" in again.stdout, again.stderr[-2000:]
    assert digest(best) == before  # not trained again
    assert seed_entries(run) == seed_entries(uninterrupted)  # its result, as it was
    assert (run / "curve.csv").read_bytes() == (uninterrupted / "curve.csv").read_bytes()
    legacy = run / "ckpt" / "seed0" / "last.ckpt"  # where last.ckpt was kept before: inside the DVC output
    legacy.write_bytes(b"training state of an older layout")
    other = subprocess.run([*command(tmp_path, "copy", tokenized_root), "optim.lr=0.002"], cwd=ROOT, env=env(),
                           capture_output=True, text=True)
    assert other.returncode == 0 and "resuming" not in other.stdout and "kept:" not in other.stdout
    assert "is from another config; training from step 0" in other.stdout
    assert digest(best) != before and not legacy.exists()


def test_a_diverged_run_fails_the_stage_with_a_message(tmp_path, tokenized_root):
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "model=lstm", "task=ptb", "profile=smoke",
                           "optim.lr=30", "optim.warmup_steps=0", "trainer.gradient_clip_val=0", "task.max_len=32",
                           f"paths.runs={tmp_path}", f"paths.tokenized={tokenized_root}", "logger.mode=disabled"],
                          cwd=ROOT, env=env(), capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "diverged: best validation ppl" in done.stderr and "lower optim.lr (now 30.0)" in done.stderr
    assert not (tmp_path / "ptb" / "lstm" / "train.json").exists()


def test_evaluate_logs_test_results_into_the_training_run(tmp_path, uninterrupted, tokenized_root):
    """Read back from the offline W&B files: the training run (same id) now holds the test metric,
    per-bucket values with counts, the by-bucket table and the sized width in its config."""
    from wandb_records import run_contents

    wandb_dir = uninterrupted.parent.parent.parent / "wandb"
    for stage in ("measure", "evaluate"):  # evaluate logs the measured speed.json too, in the same resume
        done = subprocess.run([sys.executable, "-m", "pipeline", stage, "model=lstm", "task=rt", "profile=smoke",
                               f"paths.runs={uninterrupted.parent.parent}", f"paths.logs={uninterrupted.parent.parent}-logs",
                               f"paths.tokenized={tokenized_root}", f"paths.wandb={wandb_dir.parent}",
                               "logger.mode=offline"], cwd=ROOT, env=env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    run_id = provenance(uninterrupted)["wandb_run_id"]
    result = json.loads((uninterrupted / "eval.json").read_text())
    summary, history = run_contents(wandb_dir, run_id)
    assert summary["test/acc"] == result["seeds"][0]["overall"]
    label = result["buckets"]["labels"][0]
    assert summary[f"test/count/{label}"] == result["count"][0]
    assert summary["speed/train_tokens_per_s"] > 0 and summary["speed/infer_tokens_per_s"] > 0
    assert summary["test/acc_lo"] <= summary["test/acc"] <= summary["test/acc_hi"]  # the 95% interval
    for table in ("test/by_bucket", "speed/by_length"):  # a logged Table: nested keys <name>/_type, ...
        assert any(key.startswith(table + "/") for key in history), (table, sorted(history))
    assert summary["params/backbone"] == result["params"]["backbone"]


def test_sync_picks_only_the_current_experiments_runs(uninterrupted, tmp_path, monkeypatch, capsys):
    from pipeline import grid, sync

    root = uninterrupted.parent.parent.parent  # holds runs/ and wandb/
    stale = root / "wandb" / "offline-run-20200101_000000-stale123"
    stale.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"  # the grid this test trained, whatever the repository's params.yaml holds
    params.write_text("profile: smoke\nseeds: [0]\n")
    assert grid.main(["models=lstm", "tasks=rt"], params_path=params) == 0
    monkeypatch.setattr("pipeline.config.PARAMS", params)
    assert sync.main(["--dry-run", f"paths.runs={root / 'full'}", f"paths.logs={root / 'full'}-logs",
                      f"paths.wandb={root}"]) == 0
    out = capsys.readouterr().out
    run_id = provenance(uninterrupted)["wandb_run_id"]
    assert f"-{run_id}" in out and "stale123" not in out


def stopped_at(line: str) -> int:
    """The step in '... at step N; saved ...'."""
    return int(line.split(" at step ")[1].split(";")[0])


def test_ctrl_c_saves_last_ckpt_says_so_and_the_run_continues_to_the_same_numbers(tmp_path, tokenized_root,
                                                                                   uninterrupted):
    cmd = cli("train", tmp_path, "interrupted", tokenized_root)
    run = tmp_path / "interrupted" / "rt" / "lstm"
    # SIGINT acts as in a terminal: a child of a background job would start with it ignored
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(last_ckpt(run), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out[-1000:], err[-2000:])
    line = one_line(err)
    assert "seed0: interrupted (Ctrl-C) at step" in line and "to continue from there" in line
    state = training_state(last_ckpt(run))
    assert state["global_step"] == stopped_at(line)  # saved where it stopped
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr[-2000:]
    assert seed_entries(run) == seed_entries(uninterrupted)  # the saved state was whole: a run never stopped


def test_a_non_finite_loss_is_one_line_diverged_exit_2(tmp_path, tokenized_root):
    done = stage("train", tmp_path, "nan", tokenized_root, "optim.lr=1e30", "optim.warmup_steps=0",
                 "trainer.gradient_clip_val=0")
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_line(done.stderr)
    assert line.startswith("train: rt/lstm seed0 diverged: loss is nan at step") and "lower optim.lr" in line


UNTIL_STOPPED = ["trainer.max_steps=100000", "trainer.max_epochs=100"]


def process_state(pid: int) -> str | None:
    """'R', 'S', 'Z' ... from /proc; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def orphaned(tmp_path_factory, tokenized_root):
    """A trainer whose parent is killed mid-training, as killing `dvc repro` leaves its stage command;
    while it trained, a second train and an evaluate of its run folder were started."""
    from types import SimpleNamespace

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    tmp = tmp_path_factory.mktemp("orphan")
    run = tmp / "orphan" / "rt" / "lstm"
    cmd = cli("train", tmp, "orphan", tokenized_root, *UNTIL_STOPPED)
    log = tmp / "trainer.err"
    with open(log, "w") as err:  # the trainer inherits it from its parent
        parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", *cmd],
                                  cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=err)
    trainer = None
    try:
        wait_for(run / RUN_LOCK, parent)
        while not (run / RUN_LOCK).read_text().strip():  # the holder writes its pid right after locking
            time.sleep(0.02)
        trainer = int((run / RUN_LOCK).read_text().split()[0])
        assert parent_pid(trainer) == parent.pid
        started = {name: subprocess.Popen(cli(name, tmp, "orphan", tokenized_root, *UNTIL_STOPPED), cwd=ROOT, env=env(),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for name in ("train", "evaluate")}  # side by side: each takes seconds to import torch
        second = {name: finished(proc) for name, proc in started.items()}
        wait_for(last_ckpt(run), parent)  # training, not starting up
        assert process_state(trainer) not in (None, "Z"), "the trainer ended before it was orphaned"
        parent.kill()
        parent.wait()
        t0 = time.time()
        while process_state(trainer) not in (None, "Z"):  # not our child: it cannot be waited for
            assert time.time() - t0 < 120, "the orphaned trainer kept training"
            time.sleep(0.05)
    finally:
        if trainer is not None and process_state(trainer) not in (None, "Z"):
            os.kill(trainer, signal.SIGKILL)
        parent.kill()
    return SimpleNamespace(run=run, tmp=tmp, trainer=trainer, second=second, err=log.read_text())


def test_a_second_train_or_evaluate_of_a_run_folder_in_use_exits_2_naming_its_holder(orphaned):
    for name, done in orphaned.second.items():
        assert done.returncode == 2, (name, done.stderr[-2000:])
        line = one_line(done.stderr)
        assert line.startswith(f"{name}: {orphaned.run} is in use by pid {orphaned.trainer} "
                               f"(python -m pipeline train model=lstm task=rt"), line
    assert not (orphaned.run / "eval.json").exists()


def test_a_trainer_whose_parent_dies_stops_and_saves_last_ckpt(orphaned):
    from pipeline.artifacts import run_folder_lock

    line = one_line(orphaned.err)
    assert "seed0: terminated (its parent process ended) at step" in line and "to continue from there" in line
    state = training_state(last_ckpt(orphaned.run))
    assert state["global_step"] == stopped_at(line)
    with run_folder_lock(orphaned.run):  # its lock went with it
        pass


def test_evaluate_refuses_a_training_that_did_not_finish(orphaned, tmp_path, tokenized_root, uninterrupted):
    done = stage("evaluate", orphaned.tmp, "orphan", tokenized_root, *UNTIL_STOPPED)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"{orphaned.run}/ckpt/seed0/result.json is missing: seed 0's training did not finish" in line
    assert "run `dvc repro train@lstm-rt` to finish it" in line
    run = tmp_path / "unlisted" / "rt" / "lstm"
    shutil.copytree(uninterrupted, run)
    (run / "train.json").unlink()  # every checkpoint finished, but the stage did not write its result
    (run / "eval.json").unlink(missing_ok=True)  # evaluated by an earlier test
    done = stage("evaluate", tmp_path, "unlisted", tokenized_root)
    assert done.returncode == 2
    assert f"{run}/train.json is missing: the training did not finish; run `dvc repro train@lstm-rt`" in \
        one_line(done.stderr)
    assert not (run / "eval.json").exists() and not (orphaned.run / "eval.json").exists()


def test_a_finished_seed_is_kept_when_a_seed_is_added_and_when_a_later_seed_was_killed(tmp_path, tokenized_root,
                                                                                       uninterrupted):
    run = tmp_path / "seeds" / "rt" / "lstm"
    shutil.copytree(uninterrupted, run)  # seed 0, trained to the end
    seed0 = {name: digest(run / "ckpt" / "seed0" / name) for name in ("best.ckpt", "result.json")}
    proc = subprocess.Popen(cli("train", tmp_path, "seeds", tokenized_root, "seeds=[0,1]"), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(last_ckpt(run, seed=1), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "seed1: terminated (SIGTERM) at step" in err, err[-2000:]
    refused = stage("evaluate", tmp_path, "seeds", tokenized_root, "seeds=[0,1]")
    assert refused.returncode == 2 and "ckpt/seed1/result.json is missing: seed 1's training did not finish" in \
        one_line(refused.stderr)
    again = stage("train", tmp_path, "seeds", tokenized_root, "seeds=[0,1]")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "seed1: resuming from" in again.stdout and "seed1: best val" in again.stdout
    assert "seed0: resuming" not in again.stdout and "training from step 0" not in again.stdout
    assert "kept: trained to the end earlier with this config" in \
        next(line for line in again.stdout.splitlines() if "seed0: best val" in line)
    assert {name: digest(run / "ckpt" / "seed0" / name) for name in seed0} == seed0  # never trained again
    entries = seed_entries(run)
    assert entries[0] == seed_entries(uninterrupted)[0] and entries[1]["seed"] == 1 and entries[1]["steps"] == 40

    def curve(run: Path, seed: int) -> list[str]:
        return [row for row in (run / "curve.csv").read_text().splitlines() if row.startswith(f"{seed},")]

    assert curve(run, 0) == curve(uninterrupted, 0) and curve(run, 1)  # the kept seed's curve rows too


class Payload:
    """Unpickled, it creates the file `path`: a crafted checkpoint could run any code this way."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_crafted_checkpoint_is_refused_in_one_line_and_never_unpickled(tmp_path, tokenized_root, uninterrupted,
                                                                         capsys):
    from pipeline.artifacts import ArtifactError
    from pipeline.config import load
    from pipeline.stages.train import previous_training
    from pipeline.tasks.checkpoint import load_best, require_finished_training

    canary = tmp_path / "canary"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "callbacks": {"LastCheckpoint": Payload(canary)}}, crafted)
    torch.load(crafted, weights_only=False)  # what loading it unsafely does
    assert canary.exists()
    canary.unlink()

    run = tmp_path / "crafted" / "rt" / "lstm"
    shutil.copytree(uninterrupted, run)
    seed0 = run / "ckpt" / "seed0"
    cfg = load([*ARGS, f"paths.runs={tmp_path / 'crafted'}", f"paths.tokenized={tokenized_root}",
                "logger.mode=disabled"])
    assert previous_training(cfg, 0, crafted) is None  # resume: not a plain-tensor checkpoint, start over
    said = capsys.readouterr().out
    assert one_line(said) == (f"[train] {crafted} is not a plain-tensor checkpoint (it holds other Python objects, "
                              f"not unpickled); training from step 0")
    shutil.copy(crafted, seed0 / "best.ckpt")
    done = stage("evaluate", tmp_path, "crafted", tokenized_root)  # evaluate reads best.ckpt last
    assert done.returncode == 2
    assert one_line(done.stderr) == (f"evaluate: {seed0}/best.ckpt cannot be read (not a plain-tensor checkpoint: it "
                                     f"holds other Python objects, which are not unpickled): re-run "
                                     f"`dvc repro train@lstm-rt`")
    assert require_finished_training(cfg)["seeds"][0]["seed"] == 0  # finished: result.json and train.json
    (seed0 / "best.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArtifactError, match="best.ckpt cannot be read .*re-run `dvc repro train@lstm-rt`"):
        load_best(cfg, 0)
    assert not canary.exists()
