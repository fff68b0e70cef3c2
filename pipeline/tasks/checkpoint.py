"""Loading a trained run's checkpoints (evaluate and measure read them), and what says that a seed's
training finished: its result.json, written last by the train stage.

Every load is torch.load(weights_only=True): tensors and plain containers only. A checkpoint is a
pickle, and unpickling anything else can run code, so a crafted file is refused, not executed.
"""
from __future__ import annotations

import pickle

from pipeline import kinds, paths
from pipeline.artifacts import ArtifactError, TrainResult, read_json
from pipeline.schema import Config, ConfigError, to_dict
from pipeline.tasks.base import TaskModule

SEED_RESULT = "result.json"  # ckpt/seed<k>/: a finished seed's result, curve and config fingerprint


def training_fingerprint(cfg: Config, seed: int) -> dict:
    """What must be equal for last.ckpt to continue this run, or for a finished seed to be kept: the
    config (minus where things are written, how they are shown and which other seeds run) and the seed."""
    config = to_dict(cfg)
    for key in ("paths", "logger", "eval", "bench", "seeds"):
        config.pop(key, None)
    config["trainer"].pop("enable_progress_bar", None)
    return {"config": config, "seed": seed}


# what a checkpoint that cannot be read raises: truncated / foreign file, or objects weights_only refuses
UNREADABLE = (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError)


def retrain(cfg: Config) -> str:
    return f"`dvc repro train@{cfg.model.name}-{cfg.task.name}`"


def why_unreadable(error: Exception) -> str:
    if isinstance(error, pickle.UnpicklingError):  # weights_only's refusal: its text suggests loading unsafely
        return "not a plain-tensor checkpoint: it holds other Python objects, which are not unpickled"
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def load_best(cfg: Config, seed: int) -> TaskModule:
    path = paths.best_ckpt(cfg, seed)
    if not path.exists():
        raise ConfigError(f"{path} is missing: train first ({retrain(cfg)} "
                          f"or `python -m pipeline train model={cfg.model.name} task={cfg.task.name}`)")
    cls = kinds.get(cfg.task.kind).task_module()
    try:
        module = load_weights(cls, path)
    except UNREADABLE as e:
        raise ArtifactError(f"{path} cannot be read ({why_unreadable(e)}): re-run {retrain(cfg)}") from None
    return module.eval()


def load_weights(cls: type[TaskModule], path) -> TaskModule:
    """`cls` rebuilt from a checkpoint's hyperparameters, with its weights (strict: every key), as
    Lightning's load_from_checkpoint does it, without importing Lightning (trainable.py wrote it)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module = cls(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module


def require_finished_training(cfg: Config) -> dict:
    """train.json, once every seed of cfg.seeds finished training (its ckpt/seed<k>/result.json, written
    last, is there and train.json lists it); else an error naming the file and the command that finishes
    the training. A killed (or still running) training leaves a best.ckpt that must not be reported as
    the result."""
    for seed in cfg.seeds:
        done = paths.ckpt_dir(cfg, seed) / SEED_RESULT
        if not done.exists():
            raise ArtifactError(f"{done} is missing: seed {seed}'s training did not finish (killed, or still "
                                f"running); run {retrain(cfg)} to finish it")
        read_json(done, retrain(cfg))  # a truncated one: one line naming it
    path = paths.run_dir(cfg) / paths.TRAIN_RESULT
    if not path.exists():
        raise ArtifactError(f"{path} is missing: the training did not finish; run {retrain(cfg)}")
    train = TrainResult.read(path, retrain(cfg)).to_dict()
    listed = [s["seed"] for s in train["seeds"]]
    missing = [seed for seed in cfg.seeds if seed not in listed]
    if missing:
        raise ArtifactError(f"{path} lists seeds {listed}, not {missing}: their training did not finish; "
                            f"run {retrain(cfg)}")
    return train
