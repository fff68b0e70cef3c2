"""The experiment grid: which (model, task) pairs `dvc repro` trains and evaluates.

params.yaml holds the keys that dvc.yaml expands:

    tasks: {<task>: {code}, ...}                    -> download@<task>, tokenize@<task>
    runs:  {<model>-<task>: {model, task, code}}    -> train@, evaluate@, measure@<model>-<task>
    bench: {<model>: {code}}                        -> benchmark@<model> (length sweep, no task)

`runs` is an explicit list of pairs rather than a models × tasks product because not every model
serves every task (a bidirectional CNN cannot do language modelling, an encoder–decoder only
translates) and because a CPU budget affords a different set of models per task. Write it with

    python -m pipeline grid models=lstm,tcn tasks=ptb,rt        # every pair the models can serve
    python -m pipeline grid models=all tasks=ptb --add          # add to the runs already there
    python -m pipeline grid models=lstm tasks=ptb bench=lstm,mamba,transformer   # benchmarked models

Each `code` lists the files under pipeline/ that the entry's stages import beyond what every stage
of their kind imports: the model's modules, the task kind's plug-in and LightningModule
(pipeline/code_deps.py, from the import graph). They are those stages' code deps, so editing one
model re-runs only its stages, and a model outside the grid re-runs nothing. DVC cannot splice a
list into `deps`, so dvc.yaml reads CODE_SLOTS fixed slots, padded by repeating the last path.
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from pipeline import code_deps, kinds
from pipeline.config import (PARAMS, ConfigError, all_choices, check_bench, check_runs, choices, model_backbone,
                             run_name)
from pipeline.models import registry



def reasons(models: list[str], tasks: list[str]) -> dict[tuple[str, str], str | None]:
    """Why each model cannot serve each task (None where it can); reads each conf file once."""
    backbones = {m: model_backbone(m) for m in set(models)}
    task_kinds = {t: code_deps.task_kind(t) for t in set(tasks)}

    def reason(model: str, task: str) -> str | None:
        backbone, kind = backbones[model], task_kinds[task]
        if backbone in registry.seq2seq_names():
            return None if kinds.get(kind).encoder_decoder else \
                f"{model} is an encoder–decoder model: it cannot serve {kind} tasks"
        if kinds.get(kind).causal and not registry.backbone_class(backbone).causal_capable:
            return f"{model} cannot run causally, so it cannot serve {kind} tasks"
        return None

    return {(m, t): reason(m, t) for t in tasks for m in models}


def expand(why_not: dict[tuple[str, str], str | None]) -> dict[str, dict]:
    """Every (model, task) pair of `reasons(...)` the model can serve, keyed by its stage suffix."""
    return run_entries([pair for pair, reason in why_not.items() if reason is None])


def check(params) -> None:
    """params.yaml's `tasks` / `runs` (pipeline.config.check_runs) and whether every run's model can
    serve its task; raises ConfigError naming the bad entry."""
    pairs = check_runs(params)
    why_not = reasons([m for m, _ in pairs.values()], [t for _, t in pairs.values()])
    for key, pair in pairs.items():
        if why_not[pair]:
            raise ConfigError(f"params.yaml: runs.{key}: {why_not[pair]}; remove it")


def bench_entries(models: list[str]) -> dict[str, dict[str, list[str]]]:
    return {m: {"code": code_deps.bench_code(m)} for m in models}


def task_entries(tasks: list[str]) -> dict[str, dict[str, list[str]]]:
    return {t: {"code": code_deps.task_code(t)} for t in tasks}


def run_entries(pairs: list[tuple[str, str]]) -> dict[str, dict]:
    return {run_name(m, t): {"model": m, "task": t, "code": code_deps.run_code(m, t)} for m, t in pairs}


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
    runs, tasks, bench = data.pop("runs"), data.pop("tasks"), data.pop("bench", None)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None) if data else ""
    def code(entry: dict) -> str:
        return f"code: [{', '.join(entry['code'])}]"

    lines = ["tasks:  # code (every entry): its stages' code deps beyond the common ones (pipeline/code_deps.py)"]
    lines += [f"  {t}: {{{code(e)}}}" for t, e in tasks.items()]
    lines += ["runs:"] + [f"  {key}: {{model: {r['model']}, task: {r['task']}, {code(r)}}}" for key, r in runs.items()]
    if bench is not None:
        lines += ["bench:  # benchmark@<model>: a length sweep per model"]
        lines += [f"  {m}: {{{code(e)}}}" for m, e in bench.items()]
    return header + body + "\n".join(lines) + "\n"


def main(argv: list[str], params_path: Path = PARAMS) -> int:
    """`grid models=a,b tasks=x,y [bench=c,d] [profile=p] [seeds=0,1] [--add] [--dry-run]`: rewrite
    params.yaml's tasks, runs and bench (default: the bench already there, else the grid's backbone
    models), and its profile and seeds where given."""
    flags = {a for a in argv if a.startswith("--")}
    args = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("--"))
    stray = [a for a in argv if a not in flags and "=" not in a] + sorted(flags - {"--add", "--dry-run"}) \
        + sorted(set(args) - {"models", "tasks", "bench", "profile", "seeds"})
    if stray or not {"models", "tasks"} <= set(args):
        raise ConfigError(f"usage: python -m pipeline grid models=a,b|all tasks=x,y|all [bench=c,d|all] [profile=p] "
                          "[seeds=0,1,..] [--add] [--dry-run]"
                          + (f"; not understood: {' '.join(stray)}" if stray else ""))
    models = _names(args["models"], all_choices("model"), "model")
    tasks = _names(args["tasks"], choices("task"), "task")
    params = OmegaConf.load(params_path) if params_path.exists() else OmegaConf.create({})
    why_not = reasons(models, tasks)
    runs = expand(why_not)
    skipped = [f"{m}×{t}" for (m, t), reason in why_not.items() if reason]
    if "--add" in flags:
        old = OmegaConf.to_container(params.get("runs") or OmegaConf.create({}))
        runs = {**run_entries([(str(r["model"]), str(r["task"])) for r in old.values()]), **runs}
        tasks = list(dict.fromkeys([*(params.get("tasks") or {}), *tasks]))
    backbones = choices("model")
    if "bench" in args:
        bench = _names(args["bench"], backbones, "backbone model")
    else:
        bench = [str(m) for m in (params.get("bench") or {})] or \
            list(dict.fromkeys(r["model"] for r in runs.values() if r["model"] in backbones))
    if "--add" in flags and "bench" in args:
        bench = list(dict.fromkeys([*[str(m) for m in (params.get("bench") or {})], *bench]))
    params.tasks, params.runs, params.bench = task_entries(tasks), runs, bench_entries(bench)
    if "profile" in args:
        profiles = _names(args["profile"], choices("profile"), "profile")
        if len(profiles) != 1:
            raise ConfigError(f"grid: profile={args['profile']}: a grid runs under one profile; pick one of "
                              f"{', '.join(choices('profile'))}")
        params.profile = profiles[0]
    if "seeds" in args:
        try:
            params.seeds = [int(s) for s in args["seeds"].split(",")]
        except ValueError:
            raise ConfigError(f"grid: seeds={args['seeds']}: expected comma-separated integers, e.g. seeds=0,1,2") from None
    check(params)
    check_bench(params)
    text = render(params, _header(params_path))
    if "--dry-run" in flags:
        sys.stdout.write(text)
    else:
        params_path.write_text(text)
    print(f"[grid] {len(runs)} runs over {len(tasks)} tasks"
          + (f"; skipped (cannot serve): {', '.join(skipped)}" if skipped else ""), file=sys.stderr)
    return 0
