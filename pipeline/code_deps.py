"""The code each DVC stage runs: the import closure of its module, plus the plug-ins it loads by name
(a model's backbone and block modules, a task kind's module and its LightningModule).

pipeline/dvc_file.py writes these into the generated dvc.yaml. tests/test_code_deps.py compares the
resolved dvc.yaml with this module, stage by stage and both ways: a stage that misses a module it
imports runs stale code after an edit; one that lists a module it never imports re-runs for nothing
(editing a model outside the grid retrains nothing). Imports are read with `ast`, function-level ones
included, so nothing is imported here (no torch).
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Iterable, Optional

from pipeline.config import CONF_DIR, read_yaml
from pipeline.paths import ROOT

PIPELINE = ROOT / "pipeline"
ENTRY = "pipeline.__main__"  # every stage command is `python -m pipeline <stage> ...`
# Stages that build a task's model: its blocks and the kind's LightningModule are loaded by name.
MODEL_STAGES = ("train", "evaluate", "measure", "benchmark")
KIND_STAGES = ("tokenize", "train", "evaluate", "measure")
RUN_STAGES = ("train", "evaluate", "measure")  # one `runs.<run>.code` serves all three


NATIVE_SUFFIXES = (".cpp", ".c")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PIPELINE.rglob("*.py"))}


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """{module: pipeline modules it imports}, function-level imports included. Importing a
    submodule does not count as importing its parent package's other members."""
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[name] = frozenset(m for m in found if m in known and m != name and not name.startswith(m + "."))
    return graph


def closure(roots: Iterable[str]) -> set[str]:
    """Every pipeline module that importing `roots` runs, parent packages' __init__ included."""
    graph, seen, todo = import_graph(), set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a submodule runs its packages
        todo += graph.get(name, ())
    return {m for m in seen if m in graph}


def model_modules(model: str) -> set[str]:
    """The pipeline/models modules (by name) that a model's backbone and blocks are defined in (what
    they import in turn is `closure`'s work)."""
    from pipeline.models import registry

    cfg = read_yaml(CONF_DIR / "model" / f"{model}.yaml").model
    table = registry.scan()  # names -> modules from the decorators: nothing imported
    backbone = str(cfg.backbone)
    found = [table[registry.SEQ2SEQ].get(backbone) or table[registry.BACKBONE][backbone]]
    found += [table[registry.BLOCK][name] for name, _ in registry.layer_blocks(cfg.get("layers"))]
    return {m.rsplit(".", 1)[1] for m in found}


def plugin_modules(stage: str, model: Optional[str] = None, kind: Optional[str] = None) -> set[str]:
    """What the stage imports by name at run time, beyond its static imports."""
    from pipeline import kinds

    found = set()
    if model and stage in MODEL_STAGES:
        # config.load imports sizing by name to check that the model builds (pipeline/config.py)
        found |= {"pipeline.models.sizing", *(f"pipeline.models.{m}" for m in model_modules(model))}
    if kind and stage in KIND_STAGES:
        plugin = kinds.get(kind)
        found.add(type(plugin).__module__)
        if stage in RUN_STAGES:
            found.add(plugin.module.split(":")[0])
    return found


def stage_files(stage: str, model: Optional[str] = None, kind: Optional[str] = None) -> set[str]:
    """Repo-relative source files a stage runs (its DVC code deps): .py, and a module's same-stem .cpp / .c."""
    names = closure({ENTRY, f"pipeline.stages.{stage}", *plugin_modules(stage, model, kind)})
    known = modules()
    files = {known[n] for n in names}
    # a module's native half (same stem: models/ssm_cpu.py builds models/ssm_cpu.cpp) is its code too
    files |= {p.with_suffix(ext) for p in files for ext in NATIVE_SUFFIXES if p.with_suffix(ext).exists()}
    return {str(p.relative_to(ROOT)) for p in files}


@cache
def common_files(stage: str) -> frozenset[str]:
    """What every instance of the stage runs, whatever its task kind: dvc.yaml lists these literally."""
    from pipeline import kinds

    if stage not in KIND_STAGES:
        return frozenset(stage_files(stage))
    return frozenset.intersection(*(frozenset(stage_files(stage, kind=k)) for k in kinds.names()))


def task_kind(task: str) -> str:
    return str(read_yaml(CONF_DIR / "task" / f"{task}.yaml").task.kind)


def extra_files(stage: str, model: Optional[str] = None, task: Optional[str] = None) -> list[str]:
    """The stage instance's code beyond its stage's common files: its model's and task kind's modules."""
    kind = task_kind(task) if task else None
    return sorted(stage_files(stage, model, kind) - common_files(stage))
