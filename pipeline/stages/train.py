"""train stage: fit one (task, model) for every seed with the Lightning Trainer.

Writes runs/<task>/<model>/ckpt/seed<k>/{best,last}.ckpt, config.yaml, wandb.json and
runs/<task>/<model>/train.json (per-seed summary: steps, time, tokens/s, best validation metric).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf

from pipeline import kinds, paths
from pipeline.artifacts import TrainResult, write_json
from pipeline.data.datamodule import SequenceDataModule, read_meta
from pipeline.schema import Config, to_dict
from pipeline.wandb_mode import resolve_mode


class TokenThroughput(Callback):
    """Counts real (unpadded) training tokens and the wall time spent in training batches."""

    def __init__(self):
        self.tokens, self.seconds, self._t0 = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seconds += time.perf_counter() - self._t0
        self.tokens += int(batch["mask"].sum()) + int(batch["tgt_mask"].sum() if "tgt_mask" in batch else 0)


def make_logger(cfg: Config, seed: int) -> WandbLogger | None:
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    save_dir = paths.wandb_dir(cfg)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, mode=mode,
                       name=f"{cfg.task.name}/{cfg.model.name}/seed{seed}",
                       group=cfg.logger.group or cfg.experiment, job_type="train",
                       tags=[cfg.task.name, cfg.model.name, cfg.profile, *cfg.logger.tags],
                       save_dir=str(save_dir), config=to_dict(cfg))


def build_trainer(cfg: Config, callbacks: list, logger) -> L.Trainer:
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
        val_check_interval=t.val_check_interval, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip_val, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic,
        num_sanity_val_steps=t.num_sanity_val_steps, callbacks=callbacks, logger=logger or False,
        # Our bucketed batch sampler shards by rank itself.
        use_distributed_sampler=False, default_root_dir=str(paths.runs_dir(cfg)), enable_model_summary=False,
    )


def train_seed(cfg: Config, seed: int) -> dict:
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = SequenceDataModule(cfg, seed=seed)
    module = kinds.get(cfg.task.kind).lightning_module()(to_dict(cfg), datamodule.meta)
    out = paths.ckpt_dir(cfg, seed)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = ModelCheckpoint(dirpath=out, filename="best", monitor=f"val/{module.metric_name}",
                                 mode="max" if module.higher_is_better else "min", save_last=True,
                                 enable_version_counter=False)
    throughput = TokenThroughput()
    logger = make_logger(cfg, seed)
    if logger is not None:
        logger.log_hyperparams({"params": module.param_counts(), "sizing": module.sizing})  # rank-zero only
    trainer = build_trainer(cfg, [checkpoint, throughput], logger)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    wall = time.perf_counter() - t0
    if not checkpoint.best_model_path:
        # Training stopped before any validation (max_steps inside the first epoch): validate the
        # final weights so there is always a best.ckpt and a best_val.
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        trainer.save_checkpoint(out / "best.ckpt")
        checkpoint.best_model_path = str(out / "best.ckpt")
        checkpoint.best_model_score = torch.tensor(metrics[f"val/{module.metric_name}"])

    result = {
        "seed": seed,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "train_seconds": round(wall, 2),
        "train_tokens": throughput.tokens,
        "train_tokens_per_s": round(throughput.tokens / max(throughput.seconds, 1e-9), 1),
        "best_val": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "best_ckpt": paths.relative(checkpoint.best_model_path) if checkpoint.best_model_path else None,
        "params": module.param_counts(),
        "sizing": module.sizing,
    }
    if logger is not None and trainer.is_global_zero:
        run = logger.experiment
        result["wandb_run_id"] = run.id
        result["wandb_dir"] = paths.relative(Path(run.dir).parent) if run.dir else None
        run.summary.update({f"best_val/{module.metric_name}": result["best_val"],
                            "train_tokens_per_s": result["train_tokens_per_s"]})
        write_json(out / paths.WANDB_RUN, {"run_id": run.id, "project": cfg.logger.project,
                                           "mode": resolve_mode(cfg.logger.mode), "dir": result["wandb_dir"]})
        run.finish()
    if trainer.is_global_zero:
        OmegaConf.save(cfg, out / "config.yaml")
    return result


def main(cfg: Config) -> None:
    torch.set_float32_matmul_precision("high")
    runs = [train_seed(cfg, seed) for seed in cfg.seeds]
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        meta = read_meta(cfg)
        summary = TrainResult(task=cfg.task.name, model=cfg.model.name, profile=cfg.profile,
                              config=to_dict(cfg), data={"vocab_size": meta["vocab_size"]}, seeds=runs)
        summary.write(paths.run_dir(cfg) / paths.TRAIN_RESULT)
        for r in runs:
            print(f"[train] {cfg.task.name}/{cfg.model.name} seed{r['seed']}: best val {r['best_val']} "
                  f"after {r['steps']} steps, {r['train_seconds']:.0f}s, {r['train_tokens_per_s']:.0f} tok/s")
