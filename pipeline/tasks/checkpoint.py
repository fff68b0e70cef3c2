"""Loading a trained run's best checkpoint (evaluate and measure read it)."""
from __future__ import annotations

from pipeline import kinds, paths
from pipeline.artifacts import ArtifactError
from pipeline.schema import Config, ConfigError
from pipeline.tasks.base import TaskModule


def load_best(cfg: Config, seed: int) -> TaskModule:
    path = paths.best_ckpt(cfg, seed)
    if not path.exists():
        raise ConfigError(f"{path} is missing: train first (`dvc repro train@{cfg.model.name}-{cfg.task.name}` "
                          f"or `python -m pipeline train model={cfg.model.name} task={cfg.task.name}`)")
    cls = kinds.get(cfg.task.kind).lightning_module()
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu")
    except (OSError, RuntimeError, EOFError, KeyError, ValueError) as e:  # truncated / foreign file
        raise ArtifactError(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}): re-run "
                            f"`dvc repro train@{cfg.model.name}-{cfg.task.name}`") from None
    return module.eval()
