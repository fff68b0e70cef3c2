"""`stack`: a backbone built from a list of block names, so hybrids need config, not classes.

`layers` is one period of the pattern, repeated `n_layers` times; each block is wrapped pre-norm
with a residual: x + dropout(block(norm(x))). The Transformer is `layers: [attention, ffn]`; a
conv+attention hybrid is `[conv, attention, ffn]`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import torch
from torch import nn

from pipeline.config import ModelConfig
from pipeline.models import registry
from pipeline.models.attention import position_scale, sinusoidal_positions
from pipeline.models.base import POSITION_WISE, Backbone, Complexity
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
    # Knobs of particular blocks (a block ignores the ones it does not use).
    window: int = 64  # sliding-window / Longformer / BigBird: keys each query sees on one side
    n_global: int = 1  # Longformer / BigBird: leading tokens that attend to and are seen by all
    n_random_blocks: int = 1  # BigBird: random key blocks per query block
    block_size: int = 32  # BigBird: block granularity of the sparse pattern
    d_state: int = 16  # SSMs: state size per channel
    expand: int = 2  # Mamba: inner width = expand * d_model
    conv_kernel: int = 4  # Mamba: short causal convolution before the scan
    chunk_size: int = 64  # chunked parallel forms (linear attention, selective scan)
    feature_map: str = "elu"  # linear attention: elu (elu+1) | relu
    segment_len: int = 64  # attention + recurrent memory: segment length
    n_memory: int = 4  # attention + recurrent memory: memory slots carried across segments


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
        self.learned_pos = None
        if cfg.positional == "learned":
            self.learned_pos = nn.Embedding(cfg.max_positions, cfg.d_model)
            nn.init.normal_(self.learned_pos.weight, std=position_scale(cfg.d_model))  # as the sinusoids

    @classmethod
    def width_step(cls, cfg: StackConfig) -> int:
        # Whole heads; rotary also needs an even head size (it rotates pairs of channels).
        return cfg.n_heads * (2 if cfg.positional == "rotary" else 1)

    def add_positions(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if self.cfg.positional == "sinusoidal":
            return x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, offset).to(x.dtype)
        if self.learned_pos is not None:
            return x + self.learned_pos(torch.arange(offset, offset + x.shape[1], device=x.device))
        return x

    def forward(self, x, mask=None):
        x = self.drop(self.add_positions(x))
        for norm, block in zip(self.norms, self.blocks):
            x = x + self.drop(block(norm(x), mask))
        return self.final_norm(x)

    @property
    def has_step(self) -> bool:
        return self.causal and all(block.has_step for block in self.blocks)

    @property
    def complexity(self) -> Complexity | None:
        """The claim of the stack's most expensive block (a position-wise block costs n·d²)."""
        claims = [POSITION_WISE if b.position_wise and b.complexity is None else b.complexity for b in self.blocks]
        return None if any(c is None for c in claims) else reduce(Complexity.merge, claims)

    def init_state(self, batch_size, device=None):
        if not self.has_step:
            missing = sorted({b.registry_name for b in self.blocks if not b.has_step})
            raise NotImplementedError(f"no recurrent form: blocks without step: {missing}" if missing
                                      else "a bidirectional stack has no recurrent form")
        return {"pos": 0, "blocks": [block.init_state(batch_size, device) for block in self.blocks]}

    def step(self, x_t, state):
        x = self.add_positions(x_t.unsqueeze(1), state["pos"]).squeeze(1)
        new_states = []
        for norm, block, block_state in zip(self.norms, self.blocks, state["blocks"]):
            y, block_state = block.step(norm(x), block_state)
            x = x + y
            new_states.append(block_state)
        return self.final_norm(x), {"pos": state["pos"] + 1, "blocks": new_states}
