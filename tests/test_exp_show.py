"""`make exps` (dvc exp show narrowed as the Makefile says) shows the cpu grid's test metrics, one column per run
named <task>/<model>, beside an experiment that changed a learning rate, within 120 columns: five of the seven runs
at the default (all seven need 136), every run that RUN selects.

Real DVC in a scratch repository: reports/metrics.json is what the report stage writes for the committed cpu
runs (pipeline/stages/report.py write_grid_metrics), the experiment is a real `dvc exp run -S`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.report.collect import collect
from pipeline.stages.report import write_grid_metrics
from tests.conftest import REPO, committed

# The report stage's metrics output, as dvc.yaml declares it; a param the experiment changes.
DVC_YAML = """stages:
  report:
    cmd: python -c "import json, yaml; lr = yaml.safe_load(open('params.yaml'))['optim']['lr']; m = json.load(open('grid.json')); m['ptb/lstm'] = round(m['ptb/lstm'] + 1000 * lr, 1); json.dump(m, open('reports/metrics.json', 'w'))"
    deps: [grid.json]
    params: [optim.lr]
    metrics:
    - reports/metrics.json: {cache: false}
"""


def exps_command(run: str | None = None) -> list[str]:
    """The Makefile's exps command, as make runs it (RUN at its default unless given)."""
    text = (REPO / "Makefile").read_text()
    run = run or next(l for l in text.splitlines() if l.startswith("RUN ?=")).split("?=", 1)[1].strip()
    recipe = text.split("\nexps:", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    command = recipe.replace("\\\n", " ").replace("$(RUN)", run).replace("$$", "$").strip()
    import shlex
    return shlex.split(command)


def test_exps_fits_every_cpu_run_in_120_columns(tmp_path):
    runs = tmp_path / "runs"
    for rel in subprocess.run(["git", "ls-files", "runs/*/*/eval.json"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(committed(rel))
    import yaml
    grid = yaml.safe_load(committed("params.yaml"))["runs"]
    wanted = {(r["task"], r["model"]) for r in grid.values()}
    metrics = write_grid_metrics(collect(runs, wanted), tmp_path / "grid.json")
    assert len(metrics) == len(grid) == 7
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "120",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def sh(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    (tmp_path / "reports").mkdir()
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("optim:\n  lr: 0.001\n")
    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    sh("dvc", "exp", "run", "-q", "-S", "optim.lr=0.003", "-n", "lr-0.003")
    def exps(run: str | None = None) -> tuple[str, str]:
        command = exps_command(run)
        assert command[:3] == ["dvc", "exp", "show"]
        table = sh(*command[:3], "--no-pager", *command[3:])
        lines = [line.rstrip() for line in table.splitlines() if line.strip()]
        assert max(len(line) for line in lines) <= 120, table
        return next(line for line in lines if "Experiment" in line), table

    header, table = exps()
    assert "optim.lr" in header and "lr-0.003" in table, table
    assert sum(f" {task}/{model} " in header for task, model in wanted) >= 5, table
    header, table = exps("selcopy/.*|mqar/.*")
    assert all(f" {task}/{model} " in header for task, model in wanted if task != "ptb"), table
    assert "ptb/" not in header and "…" not in table, table
    header, table = exps("ptb/.*")
    assert all(f" {task}/{model} " in header for task, model in wanted if task == "ptb") and "…" not in table, table
