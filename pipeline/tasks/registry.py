"""Task kinds (lm, classify, ...) → LightningModule classes, registered by decorator."""
from __future__ import annotations

import importlib

_TASKS: dict[str, type] = {}
_MODULES = ("lm", "classify", "recall", "translate")


def register_task(kind: str):
    def wrap(cls: type) -> type:
        _TASKS[kind] = cls
        return cls

    return wrap


def task_class(kind: str) -> type:
    for mod in _MODULES:
        importlib.import_module(f"pipeline.tasks.{mod}")
    if kind not in _TASKS:
        raise KeyError(f"unknown task kind '{kind}'; registered: {', '.join(sorted(_TASKS))}")
    return _TASKS[kind]
