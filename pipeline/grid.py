"""The experiment grid: which (model, task) pairs `dvc repro` trains and evaluates.

params.yaml holds what a person sets; `grid` writes its grid and then dvc.yaml (pipeline/dvc_file.py):

    tasks: [<task>, ...]                        -> download@<task>, tokenize@<task>
    runs:  {<model>-<task>: {model, task}}      -> train@, evaluate@, measure@<model>-<task>
    bench: [<model>, ...]                       -> benchmark@<model> (length sweep, no task)

`runs` is an explicit list of pairs rather than a models × tasks product because not every model
serves every task (a bidirectional CNN cannot do language modelling, an encoder–decoder only
translates) and because a CPU budget affords a different set of models per task. Write it with

    python -m pipeline grid models=lstm,tcn tasks=ptb,rt        # every pair the models can serve
    python -m pipeline grid models=all tasks=ptb --add          # add to the runs already there
    python -m pipeline grid models=lstm tasks=ptb bench=lstm,mamba,transformer   # benchmarked models
    python -m pipeline grid                                     # dvc.yaml again, after a hand edit
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from pipeline import code_deps, dvc_file, kinds
from pipeline.config import PARAMS, ConfigError, all_choices, check_runs, choices, model_backbone, read_params, run_name
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


def run_entries(pairs: list[tuple[str, str]]) -> dict[str, dict]:
    return {run_name(m, t): {"model": m, "task": t} for m, t in pairs}


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


SETTINGS_NOTE = """\
# Settings over conf/ for every run of this grid, the most specific layer below the command line
# (pipeline/config.py; `python -m pipeline config model=... task=...` shows where each value comes from).
# null keeps conf/'s value. Sweep: dvc exp run --queue -S optim.lr=3e-3; a key not listed: -S '++trainer.max_steps=500'
"""
# The settings a sweep most often touches, listed (null) so that `-S key=value` finds them and `dvc exp show`
# has their columns; any other schema key can be added under its section.
SETTINGS = {"task": {}, "model": {"d_model": None, "n_layers": None, "dropout": None},
            "data": {"batch_size": None}, "optim": {"lr": None, "weight_decay": None, "warmup_steps": None},
            "trainer": {"max_epochs": None, "max_steps": None}}


def render(params, header: str = "") -> str:
    """params.yaml: the grid one line per run (readable diffs), then the settings sections."""
    import yaml

    data = OmegaConf.to_container(params)
    runs, tasks, bench = data.pop("runs"), data.pop("tasks"), data.pop("bench", None)
    settings = {k: data.pop(k, None) for k in SETTINGS}
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None) if data else ""
    lines = [f"tasks: [{', '.join(tasks)}]", "runs:"]
    lines += [f"  {key}: {{model: {r['model']}, task: {r['task']}}}" for key, r in runs.items()]
    if bench is not None:
        lines += [f"bench: [{', '.join(bench)}]  # benchmark@<model>: a length sweep per model"]
    flow = {k: (settings[k] if settings[k] is not None else default) for k, default in SETTINGS.items()}
    lines += [SETTINGS_NOTE.rstrip()]
    lines += [yaml.safe_dump({k: v}, default_flow_style=True, width=1000).strip().removeprefix("{").removesuffix("}")
              for k, v in flow.items()]
    return header + body + "\n".join(lines) + "\n"


def main(argv: list[str], params_path: Path = PARAMS) -> int:
    """`grid models=a,b tasks=x,y [bench=c,d] [profile=p] [seeds=0,1] [--add] [--dry-run]`: rewrite
    params.yaml's tasks, runs and bench (default: the bench already there, else the grid's backbone
    models), and its profile and seeds where given; then dvc.yaml. Without arguments: dvc.yaml only."""
    if not argv:
        params = read_params(params_path)
        check(params)
        changed = dvc_file.write(params_path, params_path.parent / "dvc.yaml")
        print(f"[grid] dvc.yaml {'written' if changed else 'already current'} for params.yaml's "
              f"{len(params.runs)} runs", file=sys.stderr)
        return 0
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
    if not runs and "--add" not in flags:
        raise ConfigError("grid: no model of models=" + args["models"] + " can serve tasks=" + args["tasks"] + ": "
                          + "; ".join(sorted({r for r in why_not.values() if r})))
    if "--add" in flags:
        old = OmegaConf.to_container(params.get("runs") or OmegaConf.create({}))
        runs = {**run_entries([(str(r["model"]), str(r["task"])) for r in old.values()]), **runs}
        tasks = list(dict.fromkeys([*[str(t) for t in (params.get("tasks") or [])], *tasks]))
    backbones = choices("model")
    if "bench" in args:
        bench = _names(args["bench"], backbones, "backbone model")
    else:
        bench = [str(m) for m in (params.get("bench") or {})] or \
            list(dict.fromkeys(r["model"] for r in runs.values() if r["model"] in backbones))
    if "--add" in flags and "bench" in args:
        bench = list(dict.fromkeys([*[str(m) for m in (params.get("bench") or {})], *bench]))
    params.tasks, params.runs, params.bench = tasks, runs, bench
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
    text = render(params, _header(params_path))
    if "--dry-run" in flags:
        sys.stdout.write(text)
    else:
        params_path.write_text(text)
        dvc_file.write(params_path, params_path.parent / "dvc.yaml")  # beside it
    print(f"[grid] {len(runs)} runs over {len(tasks)} tasks"
          + (f"; skipped (cannot serve): {', '.join(skipped)}" if skipped else ""), file=sys.stderr)
    return 0
