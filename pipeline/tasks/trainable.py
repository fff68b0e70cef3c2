"""What the train stage adds to a task's plain module and data: Lightning's hooks.

`trainable(cls)` is the LightningModule of a TaskModule class: `cls` first in the method order, then
`LightningTask` (training / validation steps, logging, optimizer). Its parameters and buffers are
`cls`'s, so best.ckpt's state-dict keys are those the evaluate and measure stages load into `cls`
itself, without importing Lightning (pipeline/tasks/checkpoint.py). `SequenceDataModule` is the
LightningDataModule over pipeline/data/datamodule.py's `SequenceData`, with the resume position.
Only the train stage (and its tests and benchmarks) imports this module.
"""
from __future__ import annotations

from functools import cache

import lightning as L
import torch
from torchmetrics import Metric

from pipeline.data.datamodule import SequenceData
from pipeline.tasks import metrics
from pipeline.tasks.base import NonFiniteLossError, TaskModule


class BucketedMean(Metric):
    """metrics.BucketSums as a torchmetrics Metric, so DDP sync sums it exactly across ranks."""

    full_state_update = False

    def __init__(self, n_buckets: int):
        super().__init__()
        self.n_buckets = n_buckets
        self.add_state("total", default=torch.zeros(n_buckets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(n_buckets, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, bucket: torch.Tensor, weight: torch.Tensor) -> None:
        metrics.add(self.total, self.count, values, bucket, weight)

    def compute(self) -> dict[str, torch.Tensor]:
        return metrics.mean(self.total, self.count)


class LightningTask(L.LightningModule):
    """The training side of a TaskModule; mixed in after it by `trainable`, never used alone."""

    def training_step(self, batch, batch_idx):
        loss_terms, weights, _, _ = self.per_example(batch)
        loss = (loss_terms * weights).sum() / weights.sum().clamp(min=1)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {self.global_step} ({self.cfg.task.name}/{self.cfg.model.name}); "
                f"lower optim.lr (now {self.cfg.optim.lr}) or trainer.gradient_clip_val, or check the data")
        self.log("train/loss", loss, prog_bar=True, batch_size=int(weights.sum()))
        return loss  # the learning rate: LearningRateMonitor (pipeline/stages/train.py)

    def _eval_step(self, batch, metric: BucketedMean) -> None:
        _, weights, bucket, values = self.per_example(batch)
        metric.update(values, bucket, weights)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metric)

    def test_step(self, batch, batch_idx):  # Trainer.test; the evaluate stage scores without Lightning
        self._eval_step(batch, self.test_metric)

    def on_validation_epoch_end(self):
        result = self.val_metric.compute()
        self.log(f"val/{self.metric_name}", self.finalize(result["overall"]).float(), prog_bar=True, sync_dist=False)
        self.val_metric.reset()

    def configure_optimizers(self):
        return self.optimizer_and_schedule(int(self.trainer.estimated_stepping_batches))


@cache
def trainable(cls: type[TaskModule]) -> type:
    """The LightningModule that trains `cls` (one class per task class, so isinstance and the
    checkpoint's class stay the same across calls)."""

    class Trainable(cls, LightningTask):
        def __init__(self, config: dict, meta: dict):
            super().__init__(config, meta)  # cls's __init__; its super().__init__() is LightningModule's
            # logger=False: W&B gets the config once, as trained (stages/train.py run_config), not this copy
            self.save_hyperparameters(self.init_args, logger=False)

        def add_metrics(self, n_buckets: int) -> None:
            # Called by TaskModule.__init__ between the embedding and the head, where these modules were
            # registered when TaskModule was itself the LightningModule: the state dict's metadata lists
            # every submodule in order, so best.ckpt keeps the same bytes.
            self.val_metric = BucketedMean(n_buckets)
            self.test_metric = BucketedMean(n_buckets)

    Trainable.__name__ = Trainable.__qualname__ = cls.__name__
    Trainable.__module__ = __name__
    Trainable.__doc__ = cls.__doc__
    return Trainable


class SequenceDataModule(SequenceData, L.LightningDataModule):
    """The class name keys this module's state in last.ckpt (Lightning stores it by qualname)."""

    def train_dataloader(self):
        return self.loader("train", train=True)

    def val_dataloader(self):
        return self.loader("val")

    def test_dataloader(self):
        return self.loader(self.test_split)

    # Lightning checkpoints a data module's state_dict(): here the epoch and how many of its batches
    # were trained on (from the trainer's progress, not counted at fetch time, which runs a batch
    # ahead), so a run resumed from last.ckpt skips exactly those and sees the rest in the same order.
    def state_dict(self) -> dict:
        if self.trainer is None:
            return {}
        return {"epoch": self.trainer.current_epoch,
                "batches_done": self.trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.resume = (state["epoch"], state["batches_done"])
