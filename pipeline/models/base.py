"""The backbone contract every architecture implements (in the manner of s4's SequenceModule).

    forward(x: FloatTensor[B, L, D], mask: BoolTensor[B, L] | None) -> FloatTensor[B, L, D]

`mask` is True at real tokens; sequences are right-padded. A backbone is built either causal
(output t sees inputs <= t; used for language modelling) or bidirectional (used for
classification), and knows nothing of vocabularies, tasks or losses. Backbones with an O(1)
recurrent form also implement `init_state(batch_size)` and `step(x_t, state) -> (y_t, state)`
(the `Recurrent` protocol, shared with blocks and encoder–decoders).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from pipeline.models import registry
from pipeline.schema import ConfigError, ModelConfig


@dataclass(frozen=True)
class Complexity:
    """A family's claimed cost in the sequence length n (d = width, k = kernel, w = window), as the
    seed papers state it (Vaswani et al. 2017, Table 1; Katharopoulos et al. 2020; Gu & Dao 2023;
    Peng et al. 2023; Beltagy et al. 2020). The benchmark stage fits the measured exponents against
    `*_exponent`: time and memory of one sequence of length n, and the latency of one generated
    token at context n."""

    time: str  # per layer, e.g. "n²·d"
    time_exponent: float
    memory: str  # activations of one sequence
    memory_exponent: float
    decode: str  # one generated token at context n
    decode_exponent: Optional[float]  # None: no recurrent form, so no token-by-token decoding
    path: str  # maximum path length between two positions

    def merge(self, other: "Complexity") -> "Complexity":
        """A stack of blocks costs as its most expensive block, per column."""
        def worst(a, b, key):
            va, vb = getattr(a, key + "_exponent"), getattr(b, key + "_exponent")
            if va is None or vb is None:
                return (a if va is None else b), None if key == "decode" else max(va or 0, vb or 0)
            return (a if va >= vb else b), max(va, vb)
        t, te = worst(self, other, "time")
        m, me = worst(self, other, "memory")
        dsrc, de = worst(self, other, "decode")
        return Complexity(t.time, te, m.memory, me, dsrc.decode, de, t.path)


POSITION_WISE = Complexity("n·d²", 1, "n·d", 1, "d²", 0, "—")


class Recurrent:
    """The recurrent protocol of backbones, blocks and encoder–decoders (seq2seq.py):

        init_state(...) -> state      (batch_size, device) here; (memory, src_mask) for encoder–decoders
        step(x_t, state) -> (y_t, state)
        reorder_state(state, index) -> state   picks / duplicates batch rows (beam search)

    A class has a recurrent form when it overrides `step`. States are batch-first unless a class
    overrides `reorder_state`."""

    def init_state(self, *args, **kwargs) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        return map_tensors(lambda t: t.index_select(0, index), state)

    @property
    def has_step(self) -> bool:
        return type(self).step is not Recurrent.step


class Backbone(Recurrent, nn.Module):
    complexity: Optional[Complexity] = None  # the family's claim; a stack derives it from its blocks
    causal_capable: bool = True
    bidirectional_capable: bool = True
    registry_name: str = ""

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.causal = causal

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def width_step(cls, cfg: ModelConfig) -> int:
        """Granularity of d_model that the sizing search may choose from."""
        return 4


def map_tensors(fn, obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj


@dataclass
class NoSettings:
    """The settings of a block that has none of its own."""


class Block(Recurrent, nn.Module):
    """A sublayer of a `stack` backbone: (B, L, D) -> (B, L, D), without norm or residual.

    `cfg` is the stack's model config (d_model, dropout, n_heads, positional); `settings` the
    block's own, an instance of the dataclass it registered with (`@register_block(name, Settings)`;
    None: its defaults). Blocks with a recurrent form implement `init_state` / `step`; a block that
    mixes no information across positions sets `position_wise = True` and gets `step` for free.
    A stack has a recurrent form when every block has one.
    """

    position_wise: bool = False
    complexity: Optional[Complexity] = None
    settings_class: type = NoSettings  # set by @register_block(name, settings_class)
    registry_name: str = ""

    def __init__(self, cfg: ModelConfig, causal: bool, settings: Any = None):
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.settings = self.settings_class() if settings is None else settings

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def has_step(self) -> bool:
        return self.position_wise or type(self).step is not Block.step

    def init_state(self, batch_size: int, device: torch.device | None = None) -> Any:
        return None  # a position-wise block carries nothing from step to step

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if self.position_wise:
            return self.forward(x_t.unsqueeze(1)).squeeze(1), state
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")


def zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero padded positions so that they cannot leak into real ones through convolutions."""
    return x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)


def build_backbone(cfg: ModelConfig, causal: bool) -> Backbone:
    cls = registry.backbone_class(cfg.backbone)
    if causal and not cls.causal_capable:
        raise ConfigError(f"model '{cfg.name}' ({cfg.backbone}) cannot run causally, so it cannot serve "
                          f"language modelling, recall or decoder-only translation; pick a causal model")
    if not causal and not cls.bidirectional_capable:
        causal = True  # a causal-only model still classifies, reading left to right
    return cls(cfg, causal)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
