"""2-process CPU DDP (gloo) through the real CLI; its validation metric equals a single process's.

Lightning's DDP launcher re-executes the current command, so the run is its own subprocess.
"""
import json
import os
import subprocess
import sys

import lightning as L
import pytest

from pipeline.config import ROOT, load
from pipeline import kinds
from pipeline.tasks.trainable import SequenceDataModule, trainable


@pytest.mark.parametrize("task", ["rt"])
def test_ddp_validation_equals_single_process(tmp_path, tokenized_root, task):
    # 37 validation examples in batches of 16: the second rank's share is padded with a weight-0 copy.
    overrides = [f"task={task}", "model=lstm", "profile=smoke", "trainer=ddp", "trainer.accelerator=cpu",
                 "trainer.devices=2", "trainer.max_steps=4", "data.max_eval_examples=37", "logger.mode=disabled",
                 f"paths.runs={tmp_path / 'runs'}", f"paths.tokenized={tokenized_root}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "train", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = json.loads((tmp_path / "runs" / task / "lstm" / "train.json").read_text())
    ddp_val = train["seeds"][0]["best_val"]

    cfg = load(overrides[:3] + overrides[6:])  # same data, single process
    module = trainable(kinds.get(cfg.task.kind).task_module()).load_from_checkpoint(tmp_path / "runs" / task / "lstm" / "ckpt" / "seed0" / "best.ckpt")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        use_distributed_sampler=False, enable_model_summary=False)
    single = trainer.validate(module, datamodule=SequenceDataModule(cfg), verbose=False)[0]
    assert single[f"val/{module.metric_name}"] == pytest.approx(ddp_val, abs=1e-6)
    assert "strategy=ddp" not in proc.stderr  # sanity: it really ran, not a config error
