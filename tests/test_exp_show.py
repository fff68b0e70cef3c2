"""`make exps` (python -m pipeline exps: pipeline/exps.py) shows the cpu grid's test metrics with a row per run,
named <task>/<model>, and a column per experiment (the workspace, the baseline, an experiment that changed a
learning rate, one queued), within 120 columns; RUN narrows the rows.

Real DVC in a scratch repository: reports/metrics.json is what the report stage writes for the committed cpu
runs (pipeline/stages/report.py write_grid_metrics), the experiment is a real `dvc exp run -S`. The wrapping of
many experiments into blocks runs on tests/data/exp_show.json, `dvc exp show --json` as printed in that repository
(DVC 3.67)."""
from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import exps as exps_module
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
FIXTURE = Path(__file__).parent / "data" / "exp_show.json"
GRID = {(r["task"], r["model"]) for r in yaml.safe_load(committed("params.yaml"))["runs"].values()}
RUNS = sorted(f"{task}/{model}" for task, model in GRID)


def env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "120",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def sh(cwd: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A DVC repository with the committed cpu runs' eval.json, their reports/metrics.json, a baseline commit,
    experiment lr-0.003 (run) and lr-0.01 (queued)."""
    repo = tmp_path_factory.mktemp("exps")
    for rel in sh(REPO, "git", "ls-files", "runs/*/*/eval.json").stdout.split():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(committed(rel))
    metrics = write_grid_metrics(collect(repo / "runs", GRID), repo / "grid.json")
    assert sorted(metrics) == RUNS and len(RUNS) == 7
    (repo / "reports").mkdir()
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text("optim:\n  lr: 0.001\n")
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    sh(repo, "dvc", "exp", "run", "-q", "-S", "optim.lr=0.003", "-n", "lr-0.003")
    sh(repo, "dvc", "exp", "run", "-q", "--queue", "-S", "optim.lr=0.01", "-n", "lr-0.01")
    return repo


def make_exps(repo: Path, run: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """The Makefile's exps recipe as make expands it (`make -n`), run in `repo`."""
    dry = sh(REPO, "make", "-n", "--no-print-directory", "exps", *([f"RUN={run}"] if run else [])).stdout
    command = shlex.split(next(line for line in dry.splitlines() if " -m pipeline exps" in line))
    command[0] = str(REPO / command[0])  # $(PY): the venv's python, relative to the project
    return sh(repo, *command, ok=ok)


def cells(table: str, label: str) -> list[str]:
    """The cells of the row that starts with `label`."""
    return next(line for line in table.splitlines() if line.startswith(label + " ")).split()


def test_make_exps_shows_every_run_as_a_row_and_each_experiment_as_a_column_in_120_columns(scratch):
    table = make_exps(scratch).stdout
    assert max(len(line) for line in table.splitlines()) <= 120, table
    header = table.splitlines()[0].split()
    assert header == ["workspace", "main", "lr-0.003", "lr-0.01"], table
    assert table.splitlines()[2].endswith("done   queued"), table  # blank for the workspace and the baseline
    assert cells(table, "optim.lr") == ["optim.lr", "0.003", "0.001", "0.003", "0.01"], table  # exp run applies
    for run in RUNS:  # each run: its metric and direction, then the workspace, baseline, lr-0.003 and queued
        row = cells(table, run)
        assert len(row) == 1 + 2 + 4 and row[-1] == "—", table
    assert cells(table, "ptb/lstm")[1:] == ["ppl", "↓", "255.6", "253.6", "255.6", "—"], table
    assert cells(table, "mqar/transformer")[1:3] == ["acc", "↑"], table
    narrowed = make_exps(scratch, "ptb/.*").stdout
    assert [r for r in RUNS if f"\n{r} " in narrowed] == [r for r in RUNS if r.startswith("ptb/")], narrowed


def test_bad_input_is_one_line_and_exit_2(scratch, tmp_path):
    none = make_exps(scratch, "nope/.*", ok=False)
    outside = sh(tmp_path, sys.executable, "-m", "pipeline", "exps", ok=False)
    for done in (none, outside, sh(scratch, sys.executable, "-m", "pipeline", "exps", "--runs", ok=False)):
        assert done.returncode == 2 and done.stderr.startswith("exps: ") and done.stderr.count("\n") == 1, done
    assert "matches none of the runs: mqar/transformer, ptb/lstm" in none.stderr
    assert "not inside of a DVC repository" in outside.stderr


def test_fixture_is_what_dvc_prints_in_the_scratch_repository(scratch):
    """tests/data/exp_show.json has the structure DVC prints today (names, params and metric names per revision;
    the values follow the committed cpu runs, which a re-run changes)."""
    real = exps_module.experiments(json.loads(sh(scratch, "dvc", "exp", "show", "--json").stdout))
    stored = exps_module.experiments(json.loads(FIXTURE.read_text()))
    assert [(e.name, e.params, sorted(e.metrics), e.state) for e in real] == \
           [(e.name, e.params, sorted(e.metrics), e.state) for e in stored]


def test_many_experiments_wrap_into_blocks_of_every_row_without_cutting_a_column():
    payload = json.loads(FIXTURE.read_text())
    baseline = payload[1]
    done = next(r for r in baseline["experiments"] if r["name"] == "lr-0.003")
    for k in range(12):  # 12 more experiments, each with its own lr and ptb/lstm metric
        extra = copy.deepcopy(done)
        extra["name"] = extra["revs"][0]["name"] = f"sweep-lr-{k}"
        data = extra["revs"][0]["data"]
        data["params"]["params.yaml"]["data"]["optim"]["lr"] = 1e-4 * (k + 1) / 3
        data["metrics"]["reports/metrics.json"]["data"]["ptb/lstm"] = 250 + k / 7
        baseline["experiments"].append(extra)
    exps = exps_module.experiments(payload)
    names = [e.name for e in exps]
    assert len(names) == 16
    for width in (120, 80):
        lines = exps_module.render(names, exps_module.rows(exps, None, False), width)
        assert max(map(len, lines)) <= width
        blocks = "\n".join(lines).split("\n\n")
        assert len(blocks) > 1 and blocks[0].startswith(f"(1/{len(blocks)})")
        headers = [block.splitlines()[0].split()[1:] for block in blocks]
        assert [n for h in headers for n in h] == names  # every experiment once, in order: none cut
        for block in blocks:
            assert all(any(line.startswith(run + " ") for line in block.splitlines()) for run in RUNS)
    assert "3.333e-05" in "\n".join(lines)  # 4 significant digits


def test_every_param_only_with_all():
    exps = exps_module.experiments(json.loads(FIXTURE.read_text()))
    for exp in exps:
        exp.params["seeds"] = [0]
    assert "seeds" not in [label for label, _, _ in exps_module.rows(exps, None, False)]
    assert ("seeds", "", ["[0]"] * 4) in exps_module.rows(exps, None, True)
