"""`stack`: a backbone built from a list of blocks, so hybrids (and the plain Transformer) are config, not classes.

    model:
      backbone: stack
      layers: [mamba, mamba, attention, ffn]   # one period of the pattern, repeated n_layers times
      blocks:                                   # settings of a block, for every layer of that block
        mamba: {d_state: 16, chunk_size: 16}
        ffn: {mult: 4}

Each block is wrapped pre-norm with a residual: x + dropout(block(norm(x))). The Transformer is
`layers: [attention, ffn]`; a conv+attention hybrid is `[conv, attention, ffn]`.

A block's settings are the dataclass it registers with, in its own module
(`@register_block("mamba", MambaSettings)`), so a new block with a new knob touches only its module
(and its YAML). A layer takes its block's defaults, then `blocks.<name>`, then its own dict: an entry
of `layers` may be `{mamba: {d_state: 32}}` to set one layer apart. A setting the block does not have,
or a block name no module registers, is a ConfigError naming the key, the block and the valid keys. A
`blocks` entry that no layer uses is checked the same way but has no effect, so that `model.layers`
can be overridden on its own. The stack itself reads `n_heads` (shared by the attention blocks, and
the width granularity of the sizing search), `positional` and `max_positions`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from pipeline.models import registry
from pipeline.models.attention import add_sinusoidal, position_scale
from pipeline.models.base import POSITION_WISE, Backbone, Complexity
from pipeline.models.registry import register_backbone
from pipeline.schema import ConfigError, ModelConfig

POSITIONAL = ("none", "sinusoidal", "learned", "rotary")


def _open_mapping() -> Any:
    # Not in struct mode: the loader may add block names and settings here; the stack checks them.
    return OmegaConf.create({}, flags={"struct": False})


@dataclass
class StackConfig(ModelConfig):
    layers: list[Any] = field(default_factory=lambda: ["attention", "ffn"])  # names, or {name: {settings}}
    blocks: dict[str, Any] = field(default_factory=_open_mapping)  # {block name: {setting: value}}
    n_heads: int = 4  # attention blocks' heads; d_model moves in steps of whole heads
    positional: str = "sinusoidal"  # none | sinusoidal | learned | rotary
    max_positions: int = 8192  # table size for learned positions (and BigBird's random pattern)


def block_settings(name: str, values: dict, where: str) -> Any:
    """An instance of block `name`'s settings dataclass from `values`, its keys and types checked."""
    cls = registry.block_class(name).settings_class
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key '{key}' for block '{name}'; valid keys: "
                              f"{', '.join(valid) if valid else '(none: the block has no settings)'}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{where}: invalid value for block '{name}': {str(e).splitlines()[0]}") from e


def layer_plan(cfg: StackConfig) -> list[tuple[str, Any]]:
    """(block name, its settings) for each layer of one period of `cfg.layers`."""
    stale = sorted(set(cfg.keys()) - {f.name for f in dataclasses.fields(StackConfig)}) if hasattr(cfg, "keys") else []
    if stale:  # a config saved with a run from before block settings moved into the blocks
        raise ConfigError(f"model '{cfg.name}': keys {', '.join(stale)} are no longer stack settings (block settings "
                          f"live under model.blocks, pipeline/models/stack.py); this config predates that change: "
                          f"re-run the run's train stage")
    layers = registry.layer_blocks(cfg.layers)
    shared = {}
    for name, values in (getattr(cfg, "blocks", None) or {}).items():
        if name not in registry.block_names():
            raise ConfigError(f"model.blocks: unknown block '{name}'; registered: {', '.join(registry.block_names())}")
        if values is not None and not hasattr(values, "items"):
            raise ConfigError(f"model.blocks.{name}: expected a mapping {{setting: value}}, got {values}")
        shared[name] = dict(values or {})
        block_settings(name, shared[name], f"model.blocks.{name}")  # a bad shared key is blamed on its entry
    return [(name, block_settings(name, {**shared.get(name, {}), **own}, f"model.layers[{i}].{name}"))
            for i, (name, own) in enumerate(layers)]


@register_backbone("stack", StackConfig)
class Stack(Backbone):
    def __init__(self, cfg: StackConfig, causal: bool):
        super().__init__(cfg, causal)
        if cfg.positional not in POSITIONAL:
            raise ConfigError(f"model.positional='{cfg.positional}'; choose one of: {', '.join(POSITIONAL)}")
        plan = layer_plan(cfg)
        blocks = [registry.block_class(name)(cfg, causal, settings)
                  for _ in range(cfg.n_layers) for name, settings in plan]
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
            return add_sinusoidal(x, offset)
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
