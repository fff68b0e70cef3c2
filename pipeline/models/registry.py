"""Backbone, block and encoder–decoder registries: names read from the source, classes imported lazily.

A model module registers each class with a decorator whose first argument is a string literal:

    @register_backbone("lstm", RNNConfig)            a backbone and its config schema (conf/model/*.yaml)
    @register_block("mamba", MambaSettings)          a block of `stack` backbones and its own settings
    @register_seq2seq("rnn-attention", RNNAttentionConfig)   an encoder–decoder model (translation)

`names()`, `block_names()` and `seq2seq_names()` read those decorators from pipeline/models/*.py with
`ast`, importing nothing (no torch): `download`, `tokenize` or `report` never touch model code. Looking
up a class imports only the module that defines it, whose decorators then fill the tables below. This
is state-spaces/s4's lazy name → module table, except that the table is derived from the code rather
than kept by hand, and a decorator the scan did not see refuses to register, so the two cannot drift.
Adding a model stays one file (plus its YAML).
"""
from __future__ import annotations

import ast
import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from pipeline.schema import ConfigError

BACKBONE, BLOCK, SEQ2SEQ = "backbone", "block", "seq2seq model"
DECORATORS = {"register_backbone": BACKBONE, "register_block": BLOCK, "register_seq2seq": SEQ2SEQ}
# Packages whose modules are scanned: (import name, directory). Tests may add one for a toy model.
PACKAGES: list[tuple[str, Path]] = [("pipeline.models", Path(__file__).resolve().parent)]

_REGISTERED: dict[str, dict[str, tuple[type, Any]]] = {kind: {} for kind in DECORATORS.values()}


# ----------------------------------------------------------------------------- the scan


def decorated_names(path: Path) -> list[tuple[str, str]]:
    """(kind, name) of every registering decorator on a class of the module at `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else None
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name not in DECORATORS:
                continue
            arg = dec.args[0] if dec.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ValueError(f"{path}:{dec.lineno}: {name} needs the name as a string literal "
                                 f"(the registry reads it from the source without importing)")
            found.append((DECORATORS[name], arg.value))
    return found


@lru_cache(maxsize=None)
def _scan(packages: tuple[tuple[str, Path], ...]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {kind: {} for kind in DECORATORS.values()}
    for package, directory in packages:
        for path in sorted(directory.glob("*.py")):
            module = f"{package}.{path.stem}"
            for kind, name in decorated_names(path):
                # backbones and encoder–decoders share the `model.backbone` key, so they share names
                clash = [table[k][name] for k in ({kind} | ({BACKBONE, SEQ2SEQ} if kind != BLOCK else set()))
                         if name in table[k]]
                if clash:
                    raise ValueError(f"{kind} '{name}' registered twice ({clash[0]} and {module})")
                table[kind][name] = module
    return table


def scan() -> dict[str, dict[str, str]]:
    """{kind: {name: defining module}} for every registering decorator in the scanned packages."""
    return _scan(tuple(PACKAGES))


# ----------------------------------------------------------------------------- registering


def _register(kind: str, name: str, config_cls: Any) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        expected = scan()[kind].get(name)
        if expected != cls.__module__:
            where = f"the scan finds it in {expected}" if expected else "the source scan does not find it"
            raise ValueError(f"{kind} '{name}' registered from {cls.__module__}, but {where}: register it with "
                             f"a decorator whose first argument is the name as a string literal")
        if name in _REGISTERED[kind]:
            raise ValueError(f"{kind} '{name}' registered twice ({_REGISTERED[kind][name][0]} and {cls})")
        _REGISTERED[kind][name] = (cls, config_cls)
        cls.registry_name = name
        return cls

    return wrap


def register_backbone(name: str, config_cls: type) -> Callable[[type], type]:
    return _register(BACKBONE, name, config_cls)


def register_block(name: str, settings_cls: type | None = None) -> Callable[[type], type]:
    """A block and the dataclass of its own settings (None: it has none; see pipeline/models/stack.py)."""
    register = _register(BLOCK, name, settings_cls)

    def wrap(cls: type) -> type:
        if settings_cls is not None:
            cls.settings_class = settings_cls
        return register(cls)

    return wrap


def register_seq2seq(name: str, config_cls: type) -> Callable[[type], type]:
    """Encoder-decoder models live apart from backbones: their contract is (src, tgt) -> states."""
    return _register(SEQ2SEQ, name, config_cls)


# ----------------------------------------------------------------------------- looking up


def names() -> list[str]:
    return sorted(scan()[BACKBONE])


def block_names() -> list[str]:
    return sorted(scan()[BLOCK])


def seq2seq_names() -> list[str]:
    return sorted(scan()[SEQ2SEQ])


def _unknown(kind: str, name: str, source: str = "") -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}unknown {kind} '{name}'; registered: {', '.join(sorted(scan()[kind]))}")


def _entry(kind: str, name: str, source: str = "") -> tuple[type, Any]:
    if name not in _REGISTERED[kind]:
        module = scan()[kind].get(name)
        if module is None:
            raise _unknown(kind, name, source)
        importlib.import_module(module)  # its decorators register `name` (checked in _register)
    return _REGISTERED[kind][name]


def backbone_class(name: str) -> type:
    return _entry(BACKBONE, name)[0]


def config_class(name: str, source: str = "") -> type:
    return _entry(BACKBONE, name, source)[1]


def block_class(name: str) -> type:
    return _entry(BLOCK, name)[0]


def seq2seq_class(name: str) -> type:
    return _entry(SEQ2SEQ, name)[0]


def seq2seq_config_class(name: str) -> type:
    return _entry(SEQ2SEQ, name)[1]


def registered(module: str) -> set[tuple[str, str]]:
    """(kind, name) of what the already imported `module` registered (the scan's counterpart, for tests)."""
    return {(kind, name) for kind, table in _REGISTERED.items() for name, (cls, _) in table.items()
            if cls.__module__ == module}


def layer_blocks(layers: Any, source: str = "model.layers") -> list[tuple[str, dict]]:
    """The entries of a stack's `layers` list as (block name, that layer's own settings), names checked
    against the scan: torch-free, so a loader can validate a layer list without building anything.
    An entry is a block name or a one-key mapping {name: {setting: value}}."""
    entries = []
    for i, entry in enumerate(layers or []):
        where = f"{source}[{i}]"
        if hasattr(entry, "items"):
            items = list(entry.items())
            if len(items) != 1 or not (items[0][1] is None or hasattr(items[0][1], "items")):
                raise ConfigError(f"{where}: a layer is a block name or {{name: {{setting: value}}}}, got {entry}")
            name, own = str(items[0][0]), dict(items[0][1] or {})
        else:
            name, own = str(entry), {}
        if name not in scan()[BLOCK]:
            raise _unknown(BLOCK, name, where)
        entries.append((name, own))
    return entries
