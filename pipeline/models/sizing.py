"""Parameter-matched sizing: solve for the width that puts a backbone at a target parameter count.

Comparisons are fair only at equal budget. By default (`model.budget_scope: backbone`) backbone
(non-embedding) parameters are matched, as in Kaplan et al. (2020), because embedding and softmax
sizes depend on the task's vocabulary, not on the architecture; `budget_scope: total` matches the
whole task model, embeddings and heads included (pipeline/tasks/base.py counts it). Widths step by
the head count where there are heads; when no width lands within TOLERANCE (small budgets: one
step of d is a large share of the count), fewer heads are tried, largest first. Counting uses
meta-device modules, so even wide candidates cost no memory.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from pipeline.models import registry
from pipeline.models.base import Backbone, build_backbone, count_params
from pipeline.schema import Config, ConfigError, ModelConfig, to_dict

TOLERANCE = 0.05
MAX_WIDTH = 8192


def _is_seq2seq(cfg: ModelConfig) -> bool:
    return cfg.backbone in registry.seq2seq_names()


def build_model(cfg: ModelConfig, causal: bool) -> torch.nn.Module:
    """A backbone, or an encoder-decoder model (registered with @register_seq2seq; `causal` unused)."""
    return registry.seq2seq_class(cfg.backbone)(cfg) if _is_seq2seq(cfg) else build_backbone(cfg, causal)


def count_at_width(cfg: ModelConfig, d_model: int, causal: bool) -> int:
    trial = copy.deepcopy(cfg)
    trial.d_model = d_model
    with torch.device("meta"):
        return count_params(build_model(trial, causal))


def width_step(cfg: ModelConfig) -> int:
    cls = registry.seq2seq_class(cfg.backbone) if _is_seq2seq(cfg) else registry.backbone_class(cfg.backbone)
    return cls.width_step(cfg)


def solve(count: Callable[[int], int], budget: int, step: int) -> tuple[int, int]:
    """Smallest-error width (a multiple of `step`) for `budget`, where count(width) increases with width."""
    lo, hi = 1, MAX_WIDTH // step  # in units of step
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid * step) < budget:
            lo = mid + 1
        else:
            hi = mid
    best = min((w * step for w in {max(1, lo - 1), lo}), key=lambda d: abs(count(d) - budget))
    return best, count(best)


def head_counts(cfg: ModelConfig) -> list[int]:
    """The configured head count, then fewer (largest first); [None] for models without heads."""
    heads = getattr(cfg, "n_heads", None)
    return [None] if not heads else list(range(int(heads), 0, -1))


def fit_budget(cfg: ModelConfig, count: Callable[[ModelConfig, int], int], what: str) -> dict:
    """Sets cfg.d_model (and, where no width fits at the configured heads, cfg.n_heads) so that
    count(cfg, d_model) lands within TOLERANCE of cfg.budget_params; raises ConfigError otherwise."""
    budget = int(cfg.budget_params)
    closest = None
    for heads in head_counts(cfg):
        trial = copy.deepcopy(cfg)
        if heads is not None:
            trial.n_heads = heads
        d_model, params = solve(lambda d: count(trial, d), budget, width_step(trial))
        error = abs(params - budget) / budget
        closest = closest or (d_model, params, heads)
        if error <= TOLERANCE:
            cfg.d_model = d_model
            info = {"d_model": d_model, "budget_error": error}
            if heads is not None and heads != getattr(cfg, "n_heads"):
                info["n_heads"] = heads
                info["n_heads_configured"] = int(cfg.n_heads)
                cfg.n_heads = heads
            return info
    d_model, params, heads = closest
    raise ConfigError(
        f"model '{cfg.name}': no width reaches budget_params={budget} ({what}) within {TOLERANCE:.0%} "
        f"(closest: d_model={d_model} with {params} parameters"
        + (f", trying 1..{heads} heads" if heads else "") + "); change model.n_layers or the budget")


def build_sized(cfg: ModelConfig, causal: bool) -> tuple[Backbone, dict]:
    """Builds the backbone; with `budget_params` set (and budget_scope backbone), first sets
    `cfg.d_model` to hit the budget. With budget_scope total the caller has solved d_model already."""
    info: dict = {"budget_params": cfg.budget_params, "budget_scope": cfg.budget_scope, "d_model": cfg.d_model}
    if cfg.budget_params and cfg.budget_scope == "backbone":
        info.update(fit_budget(cfg, lambda trial, d: count_at_width(trial, d, causal), "backbone parameters"))
    backbone = build_model(cfg, causal)
    info["backbone_params"] = count_params(backbone)
    return backbone, info


def check_buildable(cfg: Config, source: str, task_bound: bool = True) -> None:
    """Build the sized model on the meta device (no memory, ~0.1 s): a value that the schema
    cannot see as wrong (heads that do not divide the width, an unknown block, a bidirectional
    model on a causal task) becomes a ConfigError naming the model file."""
    from omegaconf import OmegaConf

    from pipeline import kinds

    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} (profile '{cfg.profile}') but this machine "
                          f"has no CUDA GPU; use profile=cpu (a profile's trainer settings win over trainer=…), or add "
                          f"trainer.accelerator=cpu trainer.precision=32-true to the command line")
    kind = kinds.get(cfg.task.kind)
    if not task_bound:  # causal where the backbone can be, as pipeline/measure/sweep.py builds it
        causal = cfg.model.backbone not in registry.seq2seq_names() and \
            registry.backbone_class(cfg.model.backbone).causal_capable
    elif cfg.model.backbone in registry.seq2seq_names() and not kind.encoder_decoder:
        serving = [k for k in kinds.names() if kinds.get(k).encoder_decoder]
        raise ConfigError(f"{source}: model '{cfg.model.name}' is an encoder-decoder model: it serves "
                          f"{', '.join(serving)} tasks, not task '{cfg.task.name}' (kind {cfg.task.kind})")
    else:
        causal = kind.causal
    trial = OmegaConf.create(to_dict(cfg.model))
    try:
        with torch.device("meta"):
            build_sized(trial, causal=causal)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError, RuntimeError) as e:
        raise ConfigError(f"{source}: model '{cfg.model.name}' cannot be built for task '{cfg.task.name}': "
                          f"{type(e).__name__}: {e}") from None
