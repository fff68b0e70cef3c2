"""tune.lrs: a learning-rate search on validation before training, with the same steps per model,
recorded in train.json and used for the run."""
import json
import os
import subprocess
import sys

import pytest

from pipeline.config import ROOT, ConfigError, load


def test_lr_search_trains_each_candidate_and_trains_with_the_best(tmp_path, tokenized_root):
    # 10 is far too high for an LSTM LM: its validation perplexity must lose to 3e-3's (or diverge)
    args = ["model=lstm", "task=ptb", "profile=smoke", "trainer.max_steps=20", "tune.lrs=[3e-3,10.0]",
            "tune.max_steps=20", f"paths.runs={tmp_path}/runs", f"paths.logs={tmp_path}/logs",
            f"paths.tokenized={tokenized_root}", "logger.mode=disabled"]
    # a bare environment, but conftest's one thread: two on a busy 2-core host make the LSTM's steps crawl
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_MODE": "disabled", **threads})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("lr search: lr") == 2
    train = json.loads((tmp_path / "runs" / "ptb" / "lstm" / "train.json").read_text())
    tuning = train["tuning"]
    assert tuning["lrs"] == [3e-3, 10.0] and tuning["max_steps"] == 20 and tuning["metric"] == "ppl"
    good, bad = tuning["val"]
    assert good is not None and (bad is None or bad > good)
    assert tuning["chosen_lr"] == 3e-3 and train["config"]["optim"]["lr"] == 3e-3


def test_bad_candidates_are_refused_at_load():
    with pytest.raises(ConfigError, match=r"tune.lrs=\[0.001, -1.0\].*must be > 0"):
        load(["model=lstm", "task=rt", "tune.lrs=[1e-3,-1.0]"])
