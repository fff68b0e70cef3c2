"""Task kinds as plug-ins: everything that differs between language modelling, classification,
recall and translation lives in one module of this package (pipeline/kinds/<kind>.py).

    @register_kind("lm")
    class LanguageModelling(TaskKind): ...

Stages, the data module, the grid and the report never branch on a kind's name: they ask its
plug-in. Names resolve lazily, as the model registry does: `names()` reads the decorators from the
source files without importing them, and `get(name)` imports only that kind's module.
"""
from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path

from pipeline.kinds.base import TaskKind, register_kind, registered  # noqa: F401

PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def _modules() -> dict[str, str]:
    """{kind name: module} from `@register_kind("<name>")` decorators in this package's files."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for deco in getattr(node, "decorator_list", []):
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "register_kind" \
                        and deco.args and isinstance(deco.args[0], ast.Constant):
                    found[deco.args[0].value] = f"pipeline.kinds.{path.stem}"
    return found


def names() -> list[str]:
    return sorted(set(_modules()) | set(registered()))


def get(name: str) -> TaskKind:
    """The plug-in of kind `name` (its module imported on first use)."""
    if name not in registered() and name in _modules():
        importlib.import_module(_modules()[name])
    if name not in registered():
        from pipeline.schema import ConfigError

        raise ConfigError(f"task.kind='{name}' is not a registered task kind; choose one of: {', '.join(names())}")
    return registered()[name]
