"""Parameter-matched sizing: solve for the width that puts a backbone at a target parameter count.

Comparisons are fair only at equal budget. Backbone (non-embedding) parameters are matched, as in
Kaplan et al. (2020), because embedding and softmax sizes depend on the task's vocabulary, not on
the architecture. Counting uses meta-device modules, so even wide candidates cost no memory.
"""
from __future__ import annotations

import copy

import torch

from pipeline.models import registry
from pipeline.models.base import Backbone, build_backbone, count_params
from pipeline.schema import ConfigError, ModelConfig

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


def solve_width(cfg: ModelConfig, budget: int, causal: bool) -> tuple[int, int]:
    """Smallest-error width (a multiple of the backbone's width step) for `budget` parameters."""
    cls = registry.seq2seq_class(cfg.backbone) if _is_seq2seq(cfg) else registry.backbone_class(cfg.backbone)
    step = cls.width_step(cfg)
    lo, hi = 1, MAX_WIDTH // step  # in units of step; count is increasing in width
    while lo < hi:
        mid = (lo + hi) // 2
        if count_at_width(cfg, mid * step, causal) < budget:
            lo = mid + 1
        else:
            hi = mid
    candidates = [w * step for w in {max(1, lo - 1), lo}]
    best = min(candidates, key=lambda d: abs(count_at_width(cfg, d, causal) - budget))
    return best, count_at_width(cfg, best, causal)


def build_sized(cfg: ModelConfig, causal: bool) -> tuple[Backbone, dict]:
    """Builds the backbone; with `budget_params` set, first sets `cfg.d_model` to hit the budget."""
    info: dict = {"budget_params": cfg.budget_params, "d_model": cfg.d_model}
    if cfg.budget_params:
        d_model, count = solve_width(cfg, int(cfg.budget_params), causal)
        error = abs(count - cfg.budget_params) / cfg.budget_params
        if error > TOLERANCE:
            raise ConfigError(
                f"model '{cfg.name}': no width reaches budget_params={cfg.budget_params} within "
                f"{TOLERANCE:.0%} (closest: d_model={d_model} with {count} parameters); change "
                f"model.n_layers or the budget")
        cfg.d_model = d_model
        info.update(d_model=d_model, budget_error=error)
    backbone = build_model(cfg, causal)
    info["backbone_params"] = count_params(backbone)
    return backbone, info
