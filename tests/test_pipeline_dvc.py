"""A real `dvc repro` of the smoke profile in a temporary copy of the repository (conftest.smoke_repo: one repro
for the session).

Checks the whole chain (download → tokenize → train → evaluate → measure → report), that a second
repro is a no-op, that editing one model's config invalidates only that model's stages and editing
code outside the grid nothing, that `dvc metrics show` lists per-run metrics, that a queued
experiment (`dvc exp run --queue -S ...`, `dvc queue start`) runs and compares (marked slow), that the notebook
runs on the result, and that a fresh clone reproduces dvc.lock byte for byte.
"""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import SMOKE_MODELS, SMOKE_TASKS, run_ok as run

MODELS, TASKS = list(SMOKE_MODELS), list(SMOKE_TASKS)


def test_repro_produces_the_report(smoke_repo):
    repo, _, out = smoke_repo
    for model in MODELS:
        for task in TASKS:
            assert f"train@{model}-{task}" in out
            result = json.loads((repo / "runs" / task / model / "eval.json").read_text())
            assert result["schema"] == 2 and result["task"] == task and result["model"] == model
            assert len(result["per_bucket"]) == len(result["buckets"]["labels"]) == len(result["count"])
            assert sum(result["count"]) > 0
            measured = json.loads((repo / "runs" / task / model / "speed.json").read_text())
            assert f"measure@{model}-{task}" in out
            assert all(v > 0 for v in measured["infer"]["infer_tokens_per_s"]) and measured["train"]["tokens_per_s"] > 0
            assert measured["env"]["torch"].startswith("2.13")
            logged = json.loads((repo / "logs" / task / model / "seed0" / "train.json").read_text())
            run_id = logged["wandb_run_id"]
            assert list((repo / "wandb").glob(f"offline-run-*-{run_id}")), "no W&B offline run for this training run"
            assert (repo / "runs" / task / model / "ckpt" / "seed0" / "best.ckpt").exists()
    for model in MODELS:
        assert f"benchmark@{model}" in out
        bench = json.loads((repo / "results" / "bench" / f"{model}.json").read_text())
        assert [c["length"] for c in bench["cells"]] == [32, 64, 128]
        assert all(c["status"] == "ok" and c["train_s"] > 0 and c["infer_backbone_peak_mb"] > 0 for c in bench["cells"])
    assert "ignoring runs outside params.yaml's grid: mqar/transformer" in out  # the committed cpu runs beside the smoke grid
    report = (repo / "reports" / "report.md").read_text()
    assert "mqar" not in report and report.index("## Which architecture for my lengths?") < report.index("## Task")
    for name in MODELS + TASKS:
        assert name in report
    for plot in ("ptb_metric_by_bucket", "rt_speed_by_length", "rt_memory_by_length"):
        assert (repo / "reports" / "plots" / f"{plot}.png").stat().st_size > 1000
    assert (repo / "reports" / "summary.csv").read_text().count("\n") >= len(MODELS) * len(TASKS)


def test_second_repro_does_nothing(smoke_repo):
    repo, env, _ = smoke_repo
    t0 = time.perf_counter()
    out = run(["dvc", "repro"], repo, env)
    assert "Running stage" not in out and "up to date" in out
    assert time.perf_counter() - t0 < 60


def test_metrics_show_lists_every_run(smoke_repo):
    repo, env, _ = smoke_repo
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env))
    files = json.dumps(shown)
    for model in MODELS:
        for task in TASKS:
            assert f"runs/{task}/{model}/metrics.json" in files
    files = [v["data"] for v in shown.values()][0]
    metrics = [m["data"] for name, m in files.items() if name.startswith("runs/")]
    assert all(set(m) == {"metric", "test", "test_lo", "test_hi", "params", "flops_per_token", "setting"}
               for m in metrics), metrics  # one compact schema: one table
    assert all(m["setting"]["max_len"] == 32 and m["setting"]["seeds"] == 1 for m in metrics)  # what the number means
    grid = files["reports/metrics.json"]["data"]  # every run's test metric in one file: short exp show columns
    assert grid == {f"{t}/{m}": float(f"{files[f'runs/{t}/{m}/metrics.json']['data']['test']:.4g}")
                    for t in TASKS for m in MODELS}


def test_editing_one_model_config_invalidates_only_its_stages(smoke_repo):
    repo, env, _ = smoke_repo
    path = repo / "conf" / "model" / "tcn.yaml"
    original = path.read_text()
    try:
        path.write_text(original.replace("dropout: 0.2", "dropout: 0.25"))
        status = json.loads(run(["dvc", "status", "--json"], repo, env))
        changed = {name for name in status if name.startswith(("train@", "evaluate@", "benchmark@"))}
        assert {"train@tcn-ptb", "train@tcn-rt", "benchmark@tcn"} <= changed
        assert all("tcn" in name for name in changed), changed
    finally:
        path.write_text(original)


def test_editing_one_tasks_setting_in_the_profile_invalidates_only_that_tasks_stages(smoke_repo):
    """Config deps by key: the profile's tasks.rt.task is a param of rt's stages only (ptb's stay up to date)."""
    repo, env, _ = smoke_repo
    path = repo / "conf" / "profile" / "smoke.yaml"
    original = path.read_text()
    try:
        path.write_text(original.replace("  rt:\n    task: {max_len: 32}", "  rt:\n    task: {max_len: 24}"))
        assert path.read_text() != original
        status = json.loads(run(["dvc", "status", "--json"], repo, env))
        assert {"tokenize@rt", "train@lstm-rt", "evaluate@tcn-rt", "measure@tcn-rt"} <= set(status)
        assert not [name for name in status if "ptb" in name or name.startswith("benchmark@")], sorted(status)
    finally:
        path.write_text(original)


def test_editing_code_or_configs_outside_the_grid_reruns_nothing(smoke_repo):
    """A model not in the grid (rwkv), the profile not in use (paper), the report's code: nothing to train."""
    repo, env, _ = smoke_repo
    edits = [repo / "pipeline" / "models" / "rwkv.py", repo / "conf" / "profile" / "paper.yaml",
             repo / "pipeline" / "report" / "markdown.py"]
    originals = [p.read_text() for p in edits]
    try:
        for p in edits:
            p.write_text(p.read_text() + "\n# an edit\n")
        status = json.loads(run(["dvc", "status", "--json"], repo, env))
        assert set(status) == {"report"}, sorted(status)
    finally:
        for p, text in zip(edits, originals):
            p.write_text(text)


def test_a_profile_entry_of_a_task_outside_the_grid_stales_nothing(smoke_repo):
    """The report depends on the profile's common part and the grid's own entries, not on the whole file: the
    settings of a task that another grid runs (`make repro-long`'s, kept in the same profile) leave it current."""
    repo, env, _ = smoke_repo
    path = repo / "conf" / "profile" / "smoke.yaml"
    original = path.read_text()
    try:
        path.write_text(original.replace("tasks:\n", "tasks:\n  mqar:\n    trainer: {max_epochs: 3}\n"))
        assert "mqar" in path.read_text()
        assert json.loads(run(["dvc", "status", "--json"], repo, env)) == {}
        path.write_text(original.replace("  log_every_n_steps: 2", "  log_every_n_steps: 3"))
        assert "report" in json.loads(run(["dvc", "status", "--json"], repo, env))  # its common part does
    finally:
        path.write_text(original)


def test_notebook_runs_on_the_results(smoke_repo):
    import nbformat
    from nbclient import NotebookClient

    repo, _, _ = smoke_repo
    nb = nbformat.read(repo / "notebooks" / "compare_runs.ipynb", as_version=4)
    os.environ["SEQARENA_ROOT"] = str(repo)
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    finally:
        os.environ.pop("SEQARENA_ROOT")
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


def test_plots_show_renders_the_reports_charts_offline(smoke_repo, tmp_path):
    """dvc plots show embeds the report's titled PNGs (every task's metric by bucket, the benchmark), and
    its page loads nothing from elsewhere: vega plots would load vega from a CDN, blank offline."""
    repo, env, _ = smoke_repo
    shown = json.loads(run(["dvc", "plots", "show", "--json", "-o", str(tmp_path / "json")], repo, env))["data"]
    assert {f"reports/plots/{task}_metric_by_bucket.png" for task in TASKS} <= set(shown)
    assert "reports/plots/bench_time_vs_length.png" in shown
    assert all(plot["type"] == "image" for plots in shown.values() for plot in plots)
    run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], repo, env)
    html = (tmp_path / "html" / "index.html").read_text()
    assert "<script" not in html and "://" not in html


def test_a_fresh_clone_reproduces_the_lock_byte_for_byte(smoke_repo, downloads_dir, tmp_path):
    """No time, host, path or W&B id in any hashed output: a fresh clone that re-runs download, tokenize,
    train and evaluate writes the same bytes, so dvc.lock and the committed results stay unchanged
    (git status clean), and the measurement (speed.json) is kept, not re-measured."""
    repo, env, _ = smoke_repo
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "results"], repo, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    shutil.copytree(downloads_dir, clone / "data" / "downloads", dirs_exist_ok=True)
    out = run(["dvc", "repro", "evaluate@lstm-rt", "measure@lstm-rt"], clone, env)
    assert "Running stage 'train@lstm-rt'" in out and "Running stage 'evaluate@lstm-rt'" in out
    assert "Running stage 'measure@lstm-rt'" not in out
    assert run(["git", "status", "--porcelain"], clone, env) == ""
    # The README's one-stage command: its inputs first (download, tokenize in this clone), nothing deleted
    venv = Path(sys.executable).parent.parent
    out = run(["make", "stage", "S=train@tcn-ptb", f"VENV={venv}", "-o", f"{venv}/.installed"], clone, env)
    assert "Running stage 'tokenize@ptb'" in out and "Running stage 'train@tcn-ptb'" in out
    assert run(["git", "status", "--porcelain"], clone, env) == ""


@pytest.mark.slow(reason="minutes: `dvc queue start` runs a Celery worker and a DVC experiment in a temporary "
                         "workspace; `-S` settings over conf/ are tested in test_config, logs from such a workspace in "
                         "test_tracking")
def test_a_learning_rate_swept_over_a_queue_on_a_narrowed_grid(smoke_repo):
    """The README's sweep: narrow the grid, queue `-S optim.lr=...`, run the queue, compare in `dvc exp show`.
    The queued experiment trains with that lr (its train.json) and the lr is a column. Last: it narrows the grid."""
    repo, env, _ = smoke_repo
    run([sys.executable, "-m", "pipeline", "grid", "models=lstm", "tasks=rt", "bench=lstm"], repo, env)
    run(["dvc", "exp", "run", "--queue", "-n", "lr-4e-3", "-S", "optim.lr=0.004"], repo, env)
    run(["dvc", "queue", "start", "-j", "1"], repo, env)
    deadline = time.time() + 300
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo, env)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Success" in status, status + run(["dvc", "queue", "logs", "lr-4e-3"], repo, env)
    logs = run(["dvc", "queue", "logs", "lr-4e-3"], repo, env)
    assert "train@lstm-rt" in logs and "train@tcn-rt" not in logs and "@lstm-ptb" not in logs
    import csv

    header, *rows = list(csv.reader(run(["dvc", "exp", "show", "--csv"], repo, env).splitlines()))  # quoted lists
    row = next(r for r in rows if "lr-4e-3" in r)
    column = next(i for i, name in enumerate(header) if name in ("optim.lr", "params.yaml:optim.lr"))
    assert float(row[column]) == 0.004
    run(["dvc", "exp", "apply", "lr-4e-3"], repo, env)
    trained = json.loads((repo / "runs" / "rt" / "lstm" / "train.json").read_text())
    assert trained["config"]["optim"]["lr"] == 0.004
    run(["dvc", "queue", "stop"], repo, env)
