"""`stack`: a backbone built from a list of block names, so hybrids need config, not classes.

`layers` is one period of the pattern, repeated `n_layers` times; each block is wrapped pre-norm
with a residual: x + dropout(block(norm(x))). The Transformer is `layers: [attention, ffn]`; a
conv+attention hybrid is `[conv, attention, ffn]`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.config import ModelConfig
from pipeline.models import registry
from pipeline.models.attention import sinusoidal_positions
from pipeline.models.base import Backbone
from pipeline.models.registry import register_backbone

POSITIONAL = ("none", "sinusoidal", "learned", "rotary")


@dataclass
class StackConfig(ModelConfig):
    layers: list[str] = field(default_factory=lambda: ["attention", "ffn"])
    n_heads: int = 4
    ffn_mult: int = 4
    kernel_size: int = 3
    positional: str = "sinusoidal"  # none | sinusoidal | learned | rotary
    max_positions: int = 8192  # table size for learned positions


@register_backbone("stack", StackConfig)
class Stack(Backbone):
    def __init__(self, cfg: StackConfig, causal: bool):
        super().__init__(cfg, causal)
        if cfg.positional not in POSITIONAL:
            raise ValueError(f"model.positional='{cfg.positional}'; choose one of: {', '.join(POSITIONAL)}")
        blocks = [registry.block_class(name)(cfg, causal) for _ in range(cfg.n_layers) for name in cfg.layers]
        self.blocks = nn.ModuleList(blocks)
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in blocks)
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.learned_pos = nn.Embedding(cfg.max_positions, cfg.d_model) if cfg.positional == "learned" else None

    @classmethod
    def width_step(cls, cfg: StackConfig) -> int:
        # Whole heads; rotary also needs an even head size (it rotates pairs of channels).
        return cfg.n_heads * (2 if cfg.positional == "rotary" else 1)

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.positional == "sinusoidal":
            return x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        if self.learned_pos is not None:
            return x + self.learned_pos(torch.arange(x.shape[1], device=x.device))
        return x

    def forward(self, x, mask=None):
        x = self.drop(self.add_positions(x))
        for norm, block in zip(self.norms, self.blocks):
            x = x + self.drop(block(norm(x), mask))
        return self.final_norm(x)
