"""Backbone and block registries, filled by decorators at import time.

`@register_backbone("lstm", LSTMConfig)` puts a class and its config schema in one place, so the set
of valid `model.backbone` values can never drift from the code. Blocks are the residual sublayers a
hybrid stack is built from (`layers: [conv, attention, ffn]`).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

_BACKBONES: dict[str, tuple[type, type]] = {}
_BLOCKS: dict[str, type] = {}
_SEQ2SEQ: dict[str, tuple[type, type]] = {}  # encoder-decoder models (translation); not backbones
# Every other module of pipeline.models is imported to run its decorators: adding a file is enough.
_NOT_MODELS = {"base", "registry", "sizing"}
_loaded = False


def register_backbone(name: str, config_cls: type) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' registered twice ({_BACKBONES[name][0]} and {cls})")
        _BACKBONES[name] = (cls, config_cls)
        cls.registry_name = name
        return cls

    return wrap


def register_block(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _BLOCKS:
            raise ValueError(f"block '{name}' registered twice")
        _BLOCKS[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import pipeline.models as package

        for info in pkgutil.iter_modules(package.__path__):
            if info.name not in _NOT_MODELS:
                importlib.import_module(f"pipeline.models.{info.name}")


def names() -> list[str]:
    _ensure_loaded()
    return sorted(_BACKBONES)


def block_names() -> list[str]:
    _ensure_loaded()
    return sorted(_BLOCKS)


def _unknown(kind: str, name: str, valid: list[str], source: str = "") -> KeyError:
    where = f"{source}: " if source else ""
    return KeyError(f"{where}unknown {kind} '{name}'; registered: {', '.join(valid)}")


def backbone_class(name: str) -> type:
    _ensure_loaded()
    if name not in _BACKBONES:
        raise _unknown("backbone", name, names())
    return _BACKBONES[name][0]


def block_class(name: str) -> type:
    _ensure_loaded()
    if name not in _BLOCKS:
        raise _unknown("block", name, block_names())
    return _BLOCKS[name]


def config_class(name: str, source: str = "") -> type:
    from pipeline.config import ConfigError

    _ensure_loaded()
    if name not in _BACKBONES:
        raise ConfigError(f"{source + ': ' if source else ''}unknown backbone '{name}'; "
                          f"registered: {', '.join(names())}")
    return _BACKBONES[name][1]


def register_seq2seq(name: str, config_cls: type) -> Callable[[type], type]:
    """Encoder-decoder models live apart from backbones: their contract is (src, tgt) -> states."""

    def wrap(cls: type) -> type:
        if name in _SEQ2SEQ or name in _BACKBONES:
            raise ValueError(f"seq2seq model '{name}' registered twice")
        _SEQ2SEQ[name] = (cls, config_cls)
        cls.registry_name = name
        return cls

    return wrap


def seq2seq_names() -> list[str]:
    _ensure_loaded()
    return sorted(_SEQ2SEQ)


def seq2seq_class(name: str) -> type:
    _ensure_loaded()
    if name not in _SEQ2SEQ:
        raise _unknown("seq2seq model", name, seq2seq_names())
    return _SEQ2SEQ[name][0]


def seq2seq_config_class(name: str) -> type:
    _ensure_loaded()
    if name not in _SEQ2SEQ:
        raise _unknown("seq2seq model", name, seq2seq_names())
    return _SEQ2SEQ[name][1]
