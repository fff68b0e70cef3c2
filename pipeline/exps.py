"""`python -m pipeline exps [--run REGEX] [--all]`: DVC experiments side by side, transposed.

`dvc exp show` puts every run's metric and every param in a column of its own: 7 runs need 136 columns. Here a
run is a row and an experiment a column (the workspace, the baseline commit, each experiment of it by name, as
`dvc exp show --json` lists them), so the table grows downwards with the grid:

                             workspace    main  lr-0.003  lr-0.01
    ─────────────────────────────────────────────────────────────
    state                                           done   queued
    optim.lr                     0.003   0.001     0.003     0.01
    ptb/lstm          ppl ↓      255.6   253.6     255.6        —

A state row appears while an experiment is queued, running or failed; then the params that differ between the
experiments, named as `dvc exp run -S` takes them (`optim.lr`, or `<file>:<key>` outside params.yaml); then each
run's test metric from reports/metrics.json (the report stage's {"<task>/<model>": value}), with the metric's name
and direction (↑: higher is better) from the workspace's runs/<task>/<model>/eval.json. Numbers have 4 significant
digits; params.yaml's null (conf's value) stays null; a value an experiment lacks (a queued one has no metrics
yet) is "—". Experiments that do not fit the terminal (120 columns when it is not one) wrap into further blocks
of the same rows, numbered (1/2), (2/2): nothing is cut.

  --run REGEX   only the runs whose <task>/<model> matches REGEX in full (ptb/lstm, 'ptb/.*')
  --all         every param, not only those that differ
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.schema import ConfigError

USAGE = "usage: python -m pipeline exps [--run REGEX] [--all]"
GRID_METRICS = "reports/metrics.json"  # the report stage's output (pipeline/stages/report.py write_grid_metrics)
PARAMS_FILE = "params.yaml"  # DVC's default params file: its keys need no `<file>:` prefix
RUNS_DIR = Path("runs")  # conf's paths.runs, where dvc.yaml's evaluate stages write eval.json
MISSING = "—"
WIDTH = 120  # when stdout is not a terminal (COLUMNS, when set, wins)
GAP = "  "


@dataclass
class Experiment:
    """One column: what `dvc exp show --json` holds for one revision."""
    name: str
    params: dict[str, Any] = field(default_factory=dict)  # flattened: {"optim.lr": 0.003, "conf/x.yaml:k": 1}
    metrics: dict[str, Any] = field(default_factory=dict)  # GRID_METRICS: {"ptb/lstm": 252.6}
    metric_names: dict[str, str] = field(default_factory=dict)  # {"ptb/lstm": "ppl"} from runs' metrics.json
    state: str = ""  # an experiment's: done, or queued / running / failed as DVC's executor says; "" otherwise


def dvc_exp_show() -> list[dict]:
    """`dvc exp show --json` of the repository in the current directory."""
    command = ["dvc", "exp", "show", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise ConfigError("dvc is not on PATH: run `make install` and put .venv/bin first on PATH") from None
    if done.returncode != 0:
        lines = [l.strip() for l in (done.stderr + done.stdout).splitlines() if l.strip()]
        why = next((l for l in lines if l.startswith("ERROR")), lines[-1] if lines else f"exit {done.returncode}")
        raise ConfigError(f"`{' '.join(command)}` failed: {why}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise ConfigError(f"`{' '.join(command)}` printed no JSON ({e}): is DVC 3 installed?") from None


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def experiment(name: str, state: dict, status: str = "") -> Experiment:
    data = state.get("data") or {}
    params: dict[str, Any] = {}
    for path, result in (data.get("params") or {}).items():
        prefix = "" if path == PARAMS_FILE else f"{path}:"
        params.update(flatten((result or {}).get("data") or {}, prefix))
    files = {path: (result or {}).get("data") or {} for path, result in (data.get("metrics") or {}).items()}
    # runs/<task>/<model>/metrics.json, where dvc.yaml's evaluate stages declare them: {"metric": "ppl", ...}
    names = {path[len(f"{RUNS_DIR}/"):-len("/metrics.json")]: str(found["metric"]) for path, found in files.items()
             if path.startswith(f"{RUNS_DIR}/") and path.endswith("/metrics.json") and "metric" in found}
    return Experiment(name, params, files.get(GRID_METRICS, {}), names,
                      status or ("failed" if state.get("error") else ""))


def experiments(payload: list[dict]) -> list[Experiment]:
    """The workspace, each baseline commit (its branch or tag name, else its short hash) and its experiments,
    in the order DVC lists them (running, done, queued, failed)."""
    out = []
    for state in payload:
        if state["rev"] == "workspace":
            out.append(experiment("workspace", state))
            continue
        out.append(experiment(state.get("name") or state["rev"][:7], state))
        for exp_range in state.get("experiments") or []:
            head = exp_range["revs"][0]  # the experiment's last commit
            name = exp_range.get("name") or head.get("name") or head["rev"][:7]
            status = (exp_range.get("executor") or {}).get("state") or "success"  # no executor: a finished run
            out.append(experiment(name, head, "done" if status == "success" else status))
    return out


def cell(value: Any) -> str:
    """4 significant digits; params.yaml's null (conf's value) stays null."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    return "null" if value is None else str(value)


def metric_label(run: str, exps: list[Experiment]) -> str:
    """'ppl ↓': the run's metric and direction from the workspace's eval.json; the name alone from a run's own
    metrics.json where DVC shows one (dvc.yaml's evaluate metrics); else unknown."""
    try:
        result = json.loads((RUNS_DIR / run / "eval.json").read_text())
        return f"{result['metric']} {'↑' if result['higher_is_better'] else '↓'}"
    except (OSError, ValueError, KeyError):
        pass
    return next((e.metric_names[run] for e in exps if run in e.metric_names), MISSING)


def rows(exps: list[Experiment], run: str | None, every_param: bool) -> list[tuple[str, str, list[str]]]:
    """(label, metric, one cell per experiment): a state row where some experiment is not done, the params
    (those that differ unless every_param), then the runs."""
    out = []
    if any(e.state not in ("", "done") for e in exps):
        out.append(("state", "", [e.state for e in exps]))
    keys = list(dict.fromkeys(k for e in exps for k in e.params))
    for key in keys:
        values = [cell(e.params[key]) if key in e.params else MISSING for e in exps]
        if every_param or len(set(values)) > 1:
            out.append((key, "", values))
    runs = sorted({r for e in exps for r in e.metrics})
    if not runs:
        raise ConfigError(f"no experiment has {GRID_METRICS} (the report stage's metrics): run `make repro` first")
    if run is not None:
        try:
            pattern = re.compile(run)
        except re.error as e:
            raise ConfigError(f"--run {run!r} is not a regular expression: {e}") from None
        runs = [r for r in runs if pattern.fullmatch(r)]
        if not runs:
            known = sorted({r for e in exps for r in e.metrics})
            raise ConfigError(f"--run {run!r} matches none of the runs: {', '.join(known)}")
    for r in runs:
        out.append((r, metric_label(r, exps), [cell(e.metrics[r]) if r in e.metrics else MISSING for e in exps]))
    return out


def render(names: list[str], table: list[tuple[str, str, list[str]]], width: int) -> list[str]:
    """The table in blocks of as many experiment columns as fit in `width`, every block with every row: a column
    is never cut (one wider than `width` alone still prints whole)."""
    label_w = max(len(label) for label, _, _ in table)
    metric_w = max(len(metric) for _, metric, _ in table)
    head_w = label_w + len(GAP) + metric_w
    col_w = [max(len(name), *(len(values[i]) for _, _, values in table)) for i, name in enumerate(names)]
    blocks, block, used = [], [], head_w
    for i, w in enumerate(col_w):
        if block and used + len(GAP) + w > width:
            blocks.append(block)
            block, used = [], head_w
        block.append(i)
        used += len(GAP) + w
    blocks.append(block)
    lines: list[str] = []
    for k, block in enumerate(blocks):
        title = f"({k + 1}/{len(blocks)})" if len(blocks) > 1 else ""
        header = f"{title:<{head_w}}" + "".join(GAP + f"{names[i]:>{col_w[i]}}" for i in block)
        lines += [""] * bool(k) + [header.rstrip(), "─" * len(header.rstrip())]
        for label, metric, values in table:
            line = f"{label:<{label_w}}{GAP}{metric:<{metric_w}}"
            lines.append((line + "".join(GAP + f"{values[i]:>{col_w[i]}}" for i in block)).rstrip())
    return lines


def parse(argv: list[str]) -> tuple[str | None, bool]:
    run, every_param, args = None, False, list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--all":
            every_param = True
        elif arg == "--run" and args:
            run = args.pop(0)
        elif arg.startswith("--run="):
            run = arg.split("=", 1)[1]
        else:
            raise ConfigError(f"unexpected argument {arg!r}; {USAGE}")
    return run, every_param


def main(argv: list[str]) -> int:
    run, every_param = parse(argv)
    exps = experiments(dvc_exp_show())
    if not exps:
        raise ConfigError("`dvc exp show --json` lists no experiment: commit the project first (git commit)")
    width = shutil.get_terminal_size((WIDTH, 24)).columns
    print("\n".join(render([e.name for e in exps], rows(exps, run, every_param), width)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
