"""A killed training run loses nothing: SIGKILL after its first last.ckpt, the same command again
continues from there (optimizer, scheduler, sampler position, RNG) in the same W&B run, and ends
with exactly the numbers of a run that was never interrupted. SIGTERM (timeouts, preemption) exits
non-zero with a resumable checkpoint and says so."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

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
    return torch.load(run / "ckpt" / "seed0" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tokenized_root):
    tmp = tmp_path_factory.mktemp("resume")
    subprocess.run(command(tmp, "full", tokenized_root), cwd=ROOT, env=env(), check=True, capture_output=True)
    return tmp / "full" / "rt" / "lstm"


def test_sigkill_then_rerun_continues_the_same_run_to_the_same_numbers(tmp_path, tokenized_root, uninterrupted):
    cmd = command(tmp_path, "killed", tokenized_root)
    run = tmp_path / "killed" / "rt" / "lstm"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run / "ckpt" / "seed0" / "last.ckpt", proc)
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
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert {k: v for k, v in resumed.items() if k != "best_ckpt"} == \
        {k: v for k, v in full.items() if k != "best_ckpt"}  # train.json holds no time, id or "resumed"


def test_sigterm_exits_nonzero_with_a_resumable_checkpoint(tmp_path, tokenized_root):
    cmd = command(tmp_path, "termed", tokenized_root)
    run = tmp_path / "termed" / "rt" / "lstm"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run / "ckpt" / "seed0" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out[-1000:], err[-2000:])
    assert "terminated (SIGTERM) at step" in err and "to continue from there" in err
    assert not (run / "train.json").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr[-2000:]
    assert json.loads((run / "train.json").read_text())["seeds"][0]["steps"] == 40


def test_a_finished_or_reconfigured_run_starts_over(tmp_path, tokenized_root, uninterrupted):
    import shutil

    run = tmp_path / "copy" / "rt" / "lstm"
    shutil.copytree(uninterrupted, run)
    again = subprocess.run(command(tmp_path, "copy", tokenized_root), cwd=ROOT, env=env(), capture_output=True, text=True)
    assert again.returncode == 0 and "resuming" not in again.stdout  # finished: a new run, not a resume
    other = subprocess.run([*command(tmp_path, "copy", tokenized_root), "optim.lr=0.002"], cwd=ROOT, env=env(),
                           capture_output=True, text=True)
    assert other.returncode == 0 and "resuming" not in other.stdout


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
