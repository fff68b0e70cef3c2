"""train stage: fit one (task, model) for every seed with the Lightning Trainer.

Writes runs/<task>/<model>/ckpt/seed<k>/{best.ckpt, config.yaml, result.json} (result.json: the
seed's entry of train.json, its curve rows and the config fingerprint; written last, it marks the seed
as finished), runs/<task>/<model>/train.json (per seed: steps, tokens, best validation metric) and
curve.csv (training loss and validation metric by step, pipeline/tasks/curves.py). These are DVC
outputs and deterministic: the same inputs give the same bytes (no time, path, W&B id or loop counter
in them), whether or not the training was interrupted and resumed, so a fresh clone's `dvc repro`
reproduces dvc.lock and a resume does not change it. What differs from run to run (wall time,
tokens/s, host, git revision, the W&B run id) goes to logs/<task>/<model>/seed<k>/ (git-ignored,
not a DVC output) and to W&B.

best.ckpt holds the weights of the best validation step (what evaluate reads), nothing else of the
training state; logs/<task>/<model>/seed<k>/last.ckpt the whole training state after the latest step
(optimizer, scheduler, loop and sampler position, RNG), written every
`trainer.last_ckpt_every_n_steps` steps and on SIGTERM, Ctrl-C (exit 130) or the death of the process
that started it (dvc), and deleted once the seed finished. A run that stopped before its end (killed,
preempted) continues from last.ckpt when its command runs again with the same config, in the same W&B
run; a seed that finished with the same config is kept (its result.json), so adding a seed trains only
that one; a reconfigured run starts over. Checkpoints are read with weights_only=True (no code runs on
load), and the run folder is locked (pipeline/artifacts.py run_folder_lock) while training.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from pipeline import kinds, paths
from pipeline.artifacts import ArtifactError, TrainResult, atomic_write, read_json, run_folder_lock, write_json
from pipeline.data.datamodule import read_meta
from pipeline.measure import env
from pipeline.schema import Config, ConfigError, to_dict
from pipeline.tasks.base import NonFiniteLossError
from pipeline.tasks.callbacks import (BestWeights, GracefulStop, LastCheckpoint, ProgressLines, TokenThroughput,
                                      save_weights)
from pipeline.tasks.checkpoint import SEED_RESULT, training_fingerprint
from pipeline.tasks.curves import LearningCurve, write_curve
from pipeline.tasks.trainable import SequenceDataModule, trainable
from pipeline.wandb_mode import resolve_mode, run_group, run_tags

LAST = "last.ckpt"


def last_ckpt(cfg: Config, seed: int) -> Path:
    """The seed's resumable training state: in logs/ (git-ignored, not a DVC output) beside its W&B id."""
    return paths.log_dir(cfg, seed) / LAST


def previous_training(cfg: Config, seed: int, last: Path) -> str | None:
    """Whether training continues from last.ckpt: "unfinished" where it holds this config and seed's
    training, else None: training starts from step 0 (why, printed). Read with
    weights_only=True, as Lightning then reads it: a checkpoint holding anything but tensors and plain
    containers is refused rather than unpickled, which could run code."""
    if not cfg.trainer.resume or not last.exists():
        return None
    try:
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # weights_only refused an object
        print(f"[train] {paths.relative(last)} is not a plain-tensor checkpoint (it holds other Python objects, "
              f"not unpickled); training from step 0")
        return None
    except Exception as e:  # truncated or foreign file: say so, start over
        print(f"[train] {paths.relative(last)} is unreadable ({type(e).__name__}: "
              f"{(str(e).splitlines() or [''])[0][:200]}); training from step 0")
        return None
    callbacks = checkpoint.get("callbacks", {}) if isinstance(checkpoint, dict) else {}
    mine = next((v for k, v in callbacks.items() if k.startswith("LastCheckpoint")), None)
    if mine is None or mine["fingerprint"] != training_fingerprint(cfg, seed):
        print(f"[train] {paths.relative(last)} is from another config; training from step 0")
        return None
    return "unfinished"


def kept_result(cfg: Config, seed: int, out: Path) -> dict | None:
    """A seed that finished with this config and seed: its result (with its curve rows) from its
    result.json, where its best.ckpt is there too; None if either is missing, unreadable or from another
    config (said): the seed is trained."""
    saved, best = out / SEED_RESULT, out / "best.ckpt"
    if not (cfg.trainer.resume and saved.exists() and best.exists()):
        return None
    try:
        result = read_json(saved, "train")
    except ArtifactError:
        return None
    if not isinstance(result, dict) or result.pop("fingerprint", None) != training_fingerprint(cfg, seed):
        print(f"[train] {paths.relative(saved)} is from another config; training from step 0")
        return None
    return {**result, "best_ckpt": paths.relative(best), "provenance": {"kept": True}}


def clear_seed(out: Path, last: Path, resume: bool) -> None:
    """Temp files of killed writers go, and result.json: until this training finishes, nothing in the
    folder says that a training of it did, and evaluate refuses it. Before training from step 0, so do
    last.ckpt and best.ckpt (another config's, or unreadable). A last.ckpt inside ckpt/ (where it was
    kept before it moved to logs/) goes too: it would make the DVC output differ from run to run. This
    process holds the run folder's lock."""
    stale = [*out.glob(".*.tmp"), *last.parent.glob(".*.tmp"), out / SEED_RESULT, out / LAST]
    for path in stale + ([] if resume else [last, out / "best.ckpt"]):
        path.unlink(missing_ok=True)


def make_logger(cfg: Config, seed: int, run_id: str | None, d_model: int) -> WandbLogger | None:
    """The seed's W&B run: `run_id` continues it (a resumed training); a new run where an earlier one
    of the same task, model and seed is on record is tagged `rerun` with `rerun_of` its id."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    save_dir = paths.wandb_dir(cfg)
    save_dir.mkdir(parents=True, exist_ok=True)
    earlier = None if run_id else previous_run_id(cfg, seed)
    logger = WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, mode=mode,
                       name=f"{cfg.task.name}/{cfg.model.name}/seed{seed}",
                       group=run_group(cfg.logger.group, cfg.task.name, cfg.experiment), job_type="train",
                       tags=run_tags([cfg.task.name, cfg.model.name, cfg.profile, *cfg.logger.tags,
                                      *(["rerun"] if earlier else [])]),
                       save_dir=str(save_dir),
                       config={**run_config(cfg, d_model), **({"rerun_of": earlier} if earlier else {})},
                       **({"id": run_id, "resume": "allow"} if run_id else {}))
    # Lightning always passes `anonymous`, which wandb now warns about on every run; it has no effect
    logger._wandb_init.pop("anonymous", None)
    return logger


def start_run(logger: WandbLogger, wait_s: float = 60.0):
    """The logger's W&B run. Right after a kill the W&B service of the dead process may still hold
    the run id being resumed ("run ID ... is in use") until it notices; wait for it, briefly."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return logger.experiment
        except Exception as e:  # wandb raises its own error types
            if "is in use" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def previous_run_id(cfg: Config, seed: int) -> str | None:
    """The W&B id an earlier training of this task, model and seed recorded, if any."""
    saved = paths.wandb_ref(cfg, seed)
    return read_json(saved, "train").get("run_id") if saved.exists() else None


def run_config(cfg: Config, d_model: int) -> dict:
    """The config as trained, as W&B gets it: model.d_model is the width sizing solved for the budget,
    not the default; without where files go and how they are logged (paths, logger) and without the
    benchmark's settings (its own stage), none of which changes the result."""
    config = to_dict(cfg)
    config["model"]["d_model"] = d_model
    for key in ("paths", "logger", "bench"):
        config.pop(key, None)
    config["trainer"].pop("enable_progress_bar", None)
    return config


def build_trainer(cfg: Config, callbacks: list, logger, **overrides) -> L.Trainer:
    """The Trainer of cfg.trainer; `overrides` replace any of its arguments (the lr search's)."""
    t = cfg.trainer
    args = dict(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
        val_check_interval=t.val_check_interval, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip_val, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic,
        num_sanity_val_steps=t.num_sanity_val_steps, callbacks=callbacks, logger=logger,
        # Our bucketed batch sampler shards by rank itself.
        use_distributed_sampler=False, default_root_dir=str(paths.runs_dir(cfg)), enable_model_summary=False,
    )
    return L.Trainer(**{**args, **overrides})


def train_seed(cfg: Config, seed: int) -> dict:
    out, last = paths.ckpt_dir(cfg, seed), last_ckpt(cfg, seed)
    if (kept := kept_result(cfg, seed, out)) is not None:
        return kept  # trained to the end with this very config: not again (another seed was added, or killed)
    resume = last if previous_training(cfg, seed, last) == "unfinished" else None
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = SequenceDataModule(cfg, seed=seed)
    kind = kinds.get(cfg.task.kind)
    module = trainable(kind.task_module())(to_dict(cfg), datamodule.meta)
    out.mkdir(parents=True, exist_ok=True)
    last.parent.mkdir(parents=True, exist_ok=True)
    clear_seed(out, last, resume=resume is not None)
    wandb_file = paths.wandb_ref(cfg, seed)
    run_id = read_json(wandb_file, "train").get("run_id") if resume and wandb_file.exists() else None
    checkpoint = BestWeights(dirpath=out, filename="best", monitor=f"val/{module.metric_name}",
                             mode="max" if module.higher_is_better else "min", save_weights_only=True,
                             enable_version_counter=False)
    throughput = TokenThroughput()
    saver = LastCheckpoint(last, cfg.trainer.last_ckpt_every_n_steps, training_fingerprint(cfg, seed))
    curve = LearningCurve(seed, module.metric_name)
    logger = make_logger(cfg, seed, run_id, module.backbone.d_model)
    if logger is not None and int(os.environ.get("LOCAL_RANK", 0)) == 0:
        run = start_run(logger)  # created now, so its id is on disk before the first step can crash
        write_json(wandb_file, {"run_id": run.id, "project": cfg.logger.project,
                                "mode": resolve_mode(cfg.logger.mode), "dir": paths.relative(Path(run.dir).parent)})
        logger.log_hyperparams({"params": module.param_counts(), "sizing": module.sizing})
    # W&B off: the same metrics as CSV in logs/ (untracked, like W&B's own files)
    loggers = [logger] if logger is not None else [CSVLogger(paths.log_dir(cfg, seed), name="csv", version="")]
    monitors = [LearningRateMonitor(logging_interval="step")]  # tokens/s: TokenThroughput
    stop = GracefulStop()
    progress = ProgressLines(f"{cfg.task.name}/{cfg.model.name} seed{seed}", throughput)
    trainer = build_trainer(cfg, [checkpoint, throughput, saver, curve, stop, progress, *monitors], loggers)
    if resume:
        print(f"[train] {cfg.task.name}/{cfg.model.name} seed{seed}: resuming from {paths.relative(resume)}")
    t0 = time.perf_counter()
    try:
        # weights_only: Lightning reads last.ckpt as previous_training did, tensors and plain types only
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)
    except SIGTERMException:  # SIGTERM, Ctrl-C or a dead parent: LastCheckpoint.on_exception has saved last.ckpt
        why, status = stop.stopped()
        print(f"[train] {cfg.task.name}/{cfg.model.name} seed{seed}: {why} at step {trainer.global_step}; saved "
              f"{paths.relative(last)}; run the same command (or dvc repro) to continue from there", file=sys.stderr)
        raise SystemExit(status) from None
    except NonFiniteLossError as e:
        raise ConfigError(f"{cfg.task.name}/{cfg.model.name} seed{seed} diverged: {e}") from None
    finally:
        stop.restore()
    wall = time.perf_counter() - t0
    if not checkpoint.best_model_path:
        # Training stopped before any validation (max_steps inside the first epoch): validate the
        # final weights so there is always a best.ckpt and a best_val.
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        save_weights(trainer, out / "best.ckpt")
        checkpoint.best_model_path = str(out / "best.ckpt")
        checkpoint.best_model_score = torch.tensor(metrics[f"val/{module.metric_name}"])
    best = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    problem = kind.diverged(best, module.metric_name, datamodule.meta)
    if problem:
        last.unlink(missing_ok=True)  # run again, it trains from step 0 (and diverges again) rather than resume
        raise ConfigError(f"{cfg.task.name}/{cfg.model.name} seed{seed} diverged: {problem}; lower optim.lr "
                          f"(now {cfg.optim.lr}) or raise optim.warmup_steps (checkpoints kept in {paths.relative(out)})")

    result = {
        "seed": seed,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "train_tokens": throughput.tokens,
        "best_val": best,
        "best_ckpt": paths.relative(checkpoint.best_model_path) if checkpoint.best_model_path else None,
        "params": module.param_counts(),
        "sizing": module.sizing,
    }
    provenance = {  # differs from run to run: logs/, not the DVC outputs
        "train_seconds": round(wall, 2), "step_seconds": round(throughput.seconds, 2),
        "train_tokens_per_s": round(throughput.tokens / max(throughput.seconds, 1e-9), 1),
        "resumed": resume is not None, **env.provenance()}
    if logger is not None and trainer.is_global_zero:
        run = logger.experiment
        provenance.update(wandb_run_id=run.id, wandb_dir=paths.relative(Path(run.dir).parent) if run.dir else None)
        # the series' summary: the whole run's tokens/s rather than its last interval's
        run.summary.update({f"best_val/{module.metric_name}": result["best_val"],
                            TokenThroughput.METRIC: provenance["train_tokens_per_s"]})
        log_lineage(run, cfg, checkpoint.best_model_path)
        run.finish()
    if trainer.is_global_zero:
        atomic_write(out / "config.yaml", lambda tmp: OmegaConf.save(cfg, tmp))
        write_json(out / SEED_RESULT, {**result, "curve": curve.rows,  # last: it marks the seed as done
                                       "fingerprint": training_fingerprint(cfg, seed)})
        write_json(paths.log_dir(cfg, seed) / paths.TRAIN_RESULT, {**result, **provenance})
        last.unlink(missing_ok=True)  # the resumable state of a training that has ended
    return {**result, "provenance": provenance, "curve": curve.rows}


def log_lineage(run, cfg: Config, best_ckpt: str) -> None:
    """W&B lineage data -> model: the tokenized task as a `dataset` artifact and the best checkpoint as
    a `model` artifact, both by reference (W&B records paths and checksums, copies nothing). An
    offline run cannot declare an input artifact, so there the dataset is logged beside the model."""
    import wandb

    data = wandb.Artifact(f"data-{cfg.task.name}", type="dataset", metadata={"task": cfg.task.name})
    data.add_reference(paths.tokenized_dir(cfg).as_uri(), name=cfg.task.name)
    (run.log_artifact if run.offline else run.use_artifact)(data)
    model = wandb.Artifact(f"model-{cfg.task.name}-{cfg.model.name}", type="model",
                           metadata={"task": cfg.task.name, "model": cfg.model.name, "profile": cfg.profile})
    model.add_reference(Path(best_ckpt).resolve().as_uri(), name="best.ckpt")
    run.log_artifact(model)


def tune_lr(cfg: Config) -> dict | None:
    """tune.lrs: train each candidate lr from the first seed for tune.max_steps (warm-up and cosine over
    those steps), score the final weights on validation, and return the search with the chosen lr.
    Every model gets the same steps, so the search costs each the same budget. No checkpoints, no logger."""
    from pipeline.tasks.base import NonFiniteLossError

    if not cfg.tune.lrs:
        return None
    kind, seed = kinds.get(cfg.task.kind), cfg.seeds[0]
    scores, metric, higher = [], None, True
    for lr in cfg.tune.lrs:
        trial = OmegaConf.merge(cfg, {"optim": {"lr": float(lr)}, "trainer": {"max_steps": cfg.tune.max_steps}})
        L.seed_everything(seed, workers=True, verbose=False)
        datamodule = SequenceDataModule(trial, seed=seed)
        module = trainable(kind.task_module())(to_dict(trial), datamodule.meta)
        metric, higher = module.metric_name, module.higher_is_better
        trainer = build_trainer(trial, [], False, max_steps=cfg.tune.max_steps, max_epochs=-1,
                                val_check_interval=None, check_val_every_n_epoch=10**9,  # validated once, at the end
                                enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0)
        try:
            trainer.fit(module, datamodule=datamodule)
            value = trainer.validate(module, datamodule=datamodule, verbose=False)[0][f"val/{metric}"]
            value = float(value) if np.isfinite(value) else None
        except NonFiniteLossError:
            value = None
        scores.append(value)
        print(f"[train] {cfg.task.name}/{cfg.model.name} lr search: lr {lr:g} -> val {metric} "
              f"{'diverged' if value is None else f'{value:.4g}'} after {cfg.tune.max_steps} steps")
    finite = [(v, lr) for v, lr in zip(scores, cfg.tune.lrs) if v is not None]
    if not finite:
        raise ConfigError(f"{cfg.task.name}/{cfg.model.name}: every candidate of tune.lrs={list(cfg.tune.lrs)} "
                          "diverged; try smaller learning rates")
    chosen = (max if higher else min)(finite)[1]
    return {"lrs": [float(lr) for lr in cfg.tune.lrs], "val": scores, "metric": metric,
            "max_steps": cfg.tune.max_steps, "seed": seed, "chosen_lr": float(chosen)}


def main(cfg: Config) -> None:
    # one train or evaluate of a run folder at a time; DDP's other ranks run under their launcher's lock
    launcher = int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
    with run_folder_lock(paths.run_dir(cfg)) if launcher else contextlib.nullcontext():
        train_run(cfg)


def train_run(cfg: Config) -> None:
    torch.set_float32_matmul_precision("high")
    tuning = tune_lr(cfg)
    if tuning:
        cfg.optim.lr = tuning["chosen_lr"]
    runs = [train_seed(cfg, seed) for seed in cfg.seeds]
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        meta = read_meta(cfg)
        summary = TrainResult(task=cfg.task.name, model=cfg.model.name, profile=cfg.profile,
                              config=to_dict(cfg), data={"vocab_size": meta["vocab_size"]},
                              seeds=[{k: v for k, v in r.items() if k not in ("provenance", "curve")} for r in runs],
                              tuning=tuning)
        write_curve(paths.run_dir(cfg) / paths.CURVE, [row for r in runs for row in r["curve"]])
        summary.write(paths.run_dir(cfg) / paths.TRAIN_RESULT)
        for r in runs:
            p = r["provenance"]
            how = ("kept: trained to the end earlier with this config" if p.get("kept") else
                   f"{p['train_seconds']:.0f}s, {p['train_tokens_per_s']:.0f} tok/s"
                   + (" (resumed)" if p["resumed"] else ""))
            print(f"[train] {cfg.task.name}/{cfg.model.name} seed{r['seed']}: best val {r['best_val']:.4g} "
                  f"after {r['steps']} steps, {how}")
