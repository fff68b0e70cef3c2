"""The code each DVC stage runs: the import closure of its module, plus the plug-ins it loads by name
(a model's backbone and block modules, a task kind's module and its LightningModule).

dvc.yaml lists each stage's common closure (what every instance of the stage imports) and takes
the rest, which depends on the model and the task, from params.yaml: `tasks.<task>.code`,
`runs.<run>.code`, `bench.<model>.code` (paths under pipeline/, written by `python -m pipeline
grid`). DVC cannot splice a list into `deps`, so these are CODE_SLOTS fixed slots, padded by
repeating the last path. tests/test_code_deps.py compares the resolved dvc.yaml with this module,
stage by stage and both ways: a stage that misses a module it imports runs stale code after an edit;
one that lists a module it never imports re-runs for nothing (editing a model outside the grid
retrains nothing). Imports are read with `ast`, function-level ones included, so nothing is
imported here (no torch).
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Iterable, Optional

from pipeline.config import CODE_SLOTS, CONF_DIR, ConfigError, read_yaml
from pipeline.paths import ROOT

PIPELINE = ROOT / "pipeline"
ENTRY = "pipeline.__main__"  # every stage command is `python -m pipeline <stage> ...`
# Stages that build a task's model: its blocks and the kind's LightningModule are loaded by name.
MODEL_STAGES = ("train", "evaluate", "measure", "benchmark")
KIND_STAGES = ("tokenize", "train", "evaluate", "measure")
RUN_STAGES = ("train", "evaluate", "measure")  # one `runs.<run>.code` serves all three


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
        found |= {f"pipeline.models.{m}" for m in model_modules(model)}
    if kind and stage in KIND_STAGES:
        plugin = kinds.get(kind)
        found.add(type(plugin).__module__)
        if stage in RUN_STAGES:
            found.add(plugin.module.split(":")[0])
    return found


def stage_files(stage: str, model: Optional[str] = None, kind: Optional[str] = None) -> set[str]:
    """Repo-relative .py files a stage runs (its DVC code deps)."""
    names = closure({ENTRY, f"pipeline.stages.{stage}", *plugin_modules(stage, model, kind)})
    known = modules()
    return {str(known[n].relative_to(ROOT)) for n in names}


@cache
def common_files(stage: str) -> frozenset[str]:
    """What every instance of the stage runs, whatever its task kind: dvc.yaml lists these literally."""
    from pipeline import kinds

    if stage not in KIND_STAGES:
        return frozenset(stage_files(stage))
    return frozenset.intersection(*(frozenset(stage_files(stage, kind=k)) for k in kinds.names()))


def task_kind(task: str) -> str:
    return str(read_yaml(CONF_DIR / "task" / f"{task}.yaml").task.kind)


def _slots(files: set[str], what: str) -> list[str]:
    code = sorted(f.removeprefix("pipeline/") for f in files)
    if not code:
        code = ["__init__.py"]  # nothing beyond the common closure: the package marker, a dep anyway
    if len(code) > CODE_SLOTS:
        raise ConfigError(f"{what} needs {len(code)} code deps beyond its stage's ({', '.join(code)}); dvc.yaml has "
                          f"{CODE_SLOTS} slots: raise config.CODE_SLOTS and add slots to dvc.yaml")
    return code + [code[-1]] * (CODE_SLOTS - len(code))


def run_code(model: str, task: str) -> list[str]:
    """`runs.<model>-<task>.code`: the model's and the task kind's modules beyond each stage's common ones."""
    kind = task_kind(task)
    extra = set().union(*(stage_files(s, model, kind) - common_files(s) for s in RUN_STAGES))
    return _slots(extra, f"run {model}-{task}")


def task_code(task: str) -> list[str]:
    """`tasks.<task>.code`: the task kind's modules that tokenize runs beyond its common ones."""
    return _slots(stage_files("tokenize", kind=task_kind(task)) - common_files("tokenize"), f"task {task}")


def bench_code(model: str) -> list[str]:
    """`bench.<model>.code`: the model's modules that the benchmark runs beyond its common ones."""
    return _slots(stage_files("benchmark", model) - common_files("benchmark"), f"benchmark of {model}")
