"""Learning curves: the training loss every `trainer.log_every_n_steps` steps and the validation metric
at every validation, by global step. The train stage writes them as runs/<task>/<model>/curve.csv (a
deterministic DVC output: the report turns it into `dvc plots` data); the state is checkpointed, so
a resumed run's curve is the whole run's."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from pipeline.artifacts import atomic_write

COLUMNS = ("seed", "step", "split", "metric", "value")


class LearningCurve(Callback):
    def __init__(self, seed: int, metric: str):
        self.seed, self.metric = seed, metric
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % trainer.log_every_n_steps == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.rows.append({"seed": self.seed, "step": step, "split": "train", "metric": "loss",
                              "value": float(loss)})

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(f"val/{self.metric}")
        if not trainer.sanity_checking and value is not None:
            self.rows.append({"seed": self.seed, "step": trainer.global_step, "split": "val", "metric": self.metric,
                              "value": float(value)})

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


def write_curve(path: Path, rows: list[dict]) -> None:
    """One CSV for all seeds of a run, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "value": f"{r['value']:.6g}"} for r in rows)
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))
