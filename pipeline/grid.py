"""The experiment grid: which (model, task) pairs `dvc repro` trains and evaluates.

params.yaml holds two keys that dvc.yaml expands:

    tasks: [ptb, rt, ...]                        -> download@<task>, tokenize@<task>
    runs:  {<model>-<task>: {model, task}, ...}  -> train@<model>-<task>, evaluate@<model>-<task>

`runs` is an explicit list of pairs rather than a models × tasks product because not every model
serves every task (a bidirectional CNN cannot do language modelling, an encoder–decoder only
translates) and because a CPU budget affords a different set of models per task. Write it with

    python -m pipeline grid models=lstm,tcn tasks=ptb,rt        # every pair the models can serve
    python -m pipeline grid models=all tasks=ptb --add          # add to the runs already there
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, ROOT, ConfigError, _model_backbone, _read_yaml, all_choices, choices

PARAMS = ROOT / "params.yaml"


def run_name(model: str, task: str) -> str:
    return f"{model}-{task}"


def reasons(models: list[str], tasks: list[str]) -> dict[tuple[str, str], str | None]:
    """Why each model cannot serve each task (None where it can); reads each conf file once."""
    from pipeline.models import registry

    backbones = {m: _model_backbone(m) for m in set(models)}
    kinds = {t: str(_read_yaml(CONF_DIR / "task" / f"{t}.yaml").task.kind) for t in set(tasks)}

    def reason(model: str, task: str) -> str | None:
        backbone, kind = backbones[model], kinds[task]
        if backbone in registry.seq2seq_names():
            return None if kind == "translate" else f"{model} is an encoder–decoder model: it serves translation only"
        if kind in ("lm", "recall", "translate") and not registry.backbone_class(backbone).causal_capable:
            return f"{model} cannot run causally, so it cannot serve {kind} tasks"
        return None

    return {(m, t): reason(m, t) for t in tasks for m in models}


def expand(why_not: dict[tuple[str, str], str | None]) -> dict[str, dict[str, str]]:
    """Every (model, task) pair of `reasons(...)` the model can serve, keyed by its stage suffix."""
    return {run_name(m, t): {"model": m, "task": t} for (m, t), reason in why_not.items() if reason is None}


def check(params) -> None:
    """Raise ConfigError naming the bad entry of params.yaml's `tasks` / `runs`."""
    tasks, runs = params.get("tasks"), params.get("runs")
    if tasks is None or runs is None:
        raise ConfigError("params.yaml: needs `tasks` (a list) and `runs` (a mapping <model>-<task>: "
                          "{model, task}); write them with `python -m pipeline grid models=... tasks=...`")
    valid_tasks, valid_models = choices("task"), all_choices("model")
    for task in tasks:
        if task not in valid_tasks:
            raise ConfigError(f"params.yaml: tasks: unknown task '{task}'; choose from: {', '.join(valid_tasks)}")
    pairs = {}
    for key, run in runs.items():
        where = f"params.yaml: runs.{key}"
        if not hasattr(run, "keys") or set(run.keys()) != {"model", "task"}:
            raise ConfigError(f"{where}: must be {{model: <name>, task: <name>}}, got {run}")
        model, task = str(run["model"]), str(run["task"])
        if model not in valid_models:
            raise ConfigError(f"{where}: unknown model '{model}'; choose from: {', '.join(valid_models)}")
        if task not in tasks:
            raise ConfigError(f"{where}: task '{task}' is not in params.yaml `tasks` ({', '.join(tasks)}), "
                              f"so nothing downloads or tokenizes it; add it there")
        if key != run_name(model, task):
            raise ConfigError(f"{where}: the key must be '{run_name(model, task)}' (the stage name suffix)")
        pairs[key] = (model, task)
    why_not = reasons([m for m, _ in pairs.values()], [t for _, t in pairs.values()])
    for key, pair in pairs.items():
        if why_not[pair]:
            raise ConfigError(f"params.yaml: runs.{key}: {why_not[pair]}; remove it")


def selected_pairs(params) -> set[tuple[str, str]] | None:
    """{(task, model)} of params.yaml's runs; None when params.yaml has no grid."""
    runs = params.get("runs")
    return None if runs is None else {(str(r["task"]), str(r["model"])) for r in runs.values()}


def _names(value: str, valid: list[str], what: str) -> list[str]:
    names = valid if value == "all" else [v for v in value.split(",") if v]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from: all, {', '.join(valid)}")
    return names


def _header(path: Path) -> str:
    """The leading comment block of params.yaml, kept when the file is rewritten."""
    if not path.exists():
        return ""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(line for line in lines[: next((i for i, l in enumerate(lines) if not l.startswith("#")), 0)])


def render(params, header: str = "") -> str:
    """params.yaml with one line per run (readable diffs) and everything else as it was."""
    import yaml

    data = OmegaConf.to_container(params)
    runs, tasks = data.pop("runs"), data.pop("tasks")
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None) if data else ""
    lines = [f"tasks: [{', '.join(tasks)}]", "runs:"]
    lines += [f"  {key}: {{model: {r['model']}, task: {r['task']}}}" for key, r in runs.items()]
    return header + body + "\n".join(lines) + "\n"


def main(argv: list[str], params_path: Path = PARAMS) -> int:
    """`grid models=a,b tasks=x,y [--add] [--dry-run]`: rewrite params.yaml's tasks and runs."""
    flags = {a for a in argv if a.startswith("--")}
    args = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("--"))
    stray = [a for a in argv if a not in flags and "=" not in a] + sorted(flags - {"--add", "--dry-run"}) \
        + sorted(set(args) - {"models", "tasks"})
    if stray or not {"models", "tasks"} <= set(args):
        raise ConfigError(f"usage: python -m pipeline grid models=a,b|all tasks=x,y|all [--add] [--dry-run]"
                          + (f"; not understood: {' '.join(stray)}" if stray else ""))
    models = _names(args["models"], all_choices("model"), "model")
    tasks = _names(args["tasks"], choices("task"), "task")
    params = OmegaConf.load(params_path) if params_path.exists() else OmegaConf.create({})
    why_not = reasons(models, tasks)
    runs = expand(why_not)
    skipped = [f"{m}×{t}" for (m, t), reason in why_not.items() if reason]
    if "--add" in flags:
        runs = {**OmegaConf.to_container(params.get("runs") or OmegaConf.create({})), **runs}
        tasks = list(dict.fromkeys([*(params.get("tasks") or []), *tasks]))
    params.tasks, params.runs = tasks, runs
    check(params)
    text = render(params, _header(params_path))
    if "--dry-run" in flags:
        sys.stdout.write(text)
    else:
        params_path.write_text(text)
    print(f"[grid] {len(runs)} runs over {len(tasks)} tasks"
          + (f"; skipped (cannot serve): {', '.join(skipped)}" if skipped else ""), file=sys.stderr)
    return 0
