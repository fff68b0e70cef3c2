"""Report stage: aggregation, tables, plots, W&B logging and the comparison notebook.

Built on hand-written eval.json files (2 tasks x 2 models, 2 seeds each) with numbers chosen so the
derived values are easy to check by hand. No torch or Lightning needed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.stages import report
from pipeline.stages.report import AT_CHANCE, ReportError, WandbTarget, at_chance, build_tables, collect, write_report
from pipeline.wandb_mode import resolve_mode

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "compare_runs.ipynb"
EDGES, LABELS = [16, 32, 64, 128], ["1-16", "17-32", "33-64", "65-128"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_eval(task: str, model: str, seeds: list[tuple[float, list]], *, kind: str = "lm", metric: str = "ppl",
              higher: bool = False, baseline: tuple[str, float] = ("unigram", 600.0),
              count: list[int] | None = None, peak_mem: list | None = None) -> dict:
    count = count or [100, 100, 200, 400]
    per_bucket_mean = [None if all(s[1][i] is None for s in seeds)
                       else sum(s[1][i] for s in seeds if s[1][i] is not None) /
                       sum(s[1][i] is not None for s in seeds) for i in range(len(EDGES))]
    return {
        "schema_version": 1, "task": task, "task_kind": kind, "model": model, "backbone": model,
        "metric": metric, "higher_is_better": higher, "config": {"task": {"name": task}},
        "params": {"total": 1_534_210, "backbone": 526_336, "embedding_and_head": 1_007_874},
        "sizing": {"budget_params": 500_000, "d_model": 128, "budget_error": 0.05, "backbone_params": 526_336},
        "flops_per_token": 1.05e6, "receptive_field": None,
        "env": {"git_sha": "abc1234", "torch": "2.13.0+cpu", "device": "cpu", "cpu": "Test CPU", "threads": 2},
        "baseline": {"name": baseline[0], "value": baseline[1]},
        "reference": f"reference point for {task}",
        "buckets": {"edges": EDGES, "labels": LABELS, "unit": "context position" if kind == "lm" else "document tokens"},
        "seeds": [{"seed": k, "overall": overall, "per_bucket": pb, "count": count,
                   "train": {"steps": 10, "train_seconds": 1.0, "train_tokens_per_s": 1000.0 * (k + 1)}}
                  for k, (overall, pb) in enumerate(seeds)],
        "overall": sum(s[0] for s in seeds) / len(seeds), "overall_std": 0.0,
        "per_bucket": per_bucket_mean, "count": count,
        "speed": {"lengths": EDGES, "batch_size": 8, "device": "cpu",
                  "infer_tokens_per_s": [50000.0, 70000.0, 80000.0, 85000.0], "latency_ms": [2.5, 3.6, 6.4, 12.0],
                  "peak_mem_mb": peak_mem or [1.2, 2.3, 4.8, 9.9]},
    }


def grid() -> list[dict]:
    acc = dict(kind="classify", metric="acc", higher=True, baseline=("majority class", 0.578), count=[10, 20, 5, 0])
    return [
        # ptb: lstm clearly beats unigram (600); tcn at 560 is within 10% of it -> at chance.
        make_eval("ptb", "lstm", [(180.0, [260.0, 190.0, 170.0, 160.0]), (200.0, [280.0, 210.0, 190.0, 180.0])]),
        make_eval("ptb", "tcn", [(560.0, [570.0, 560.0, 560.0, 550.0]), (560.0, [570.0, 560.0, 560.0, 550.0])],
                  peak_mem=[1.0, 2.0, None, 8.0]),
        # rt: transformer 0.81 vs majority 0.578 is fine; lstm 0.584 <= 0.578 + 0.02 -> at chance.
        # The last bucket has no documents (count 0, value null).
        make_eval("rt", "transformer", [(0.80, [0.7, 0.8, 0.9, None]), (0.82, [0.72, 0.82, 0.92, None])], **acc),
        make_eval("rt", "lstm", [(0.578, [0.5, 0.6, 0.6, None]), (0.590, [0.5, 0.6, 0.62, None])], **acc),
    ]


def write_runs(root: Path, results: list[dict]) -> Path:
    runs = root / "runs"
    for r in results:
        d = runs / r["task"] / r["model"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "eval.json").write_text(json.dumps(r))
    return runs


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project dir with runs/*/*/eval.json and a written reports/ (W&B off)."""
    results = collect(write_runs(tmp_path, grid()))
    write_report(results, tmp_path / "reports", experiment="unit")
    return tmp_path


# ----------------------------------------------------------------------------- aggregation


def test_at_chance_rule():
    assert at_chance(600.0, 600.0, higher_is_better=False)  # equal to baseline
    assert at_chance(541.0, 600.0, higher_is_better=False)  # < 10% better
    assert not at_chance(539.0, 600.0, higher_is_better=False)
    assert at_chance(0.578, 0.578, higher_is_better=True)
    assert at_chance(0.597, 0.578, higher_is_better=True)  # within 0.02
    assert not at_chance(0.60, 0.578, higher_is_better=True)
    assert at_chance(11.5, 10.0, higher_is_better=True)  # 0-100 metrics (BLEU): within 2 points
    assert not at_chance(12.5, 10.0, higher_is_better=True)
    assert at_chance(0.9, None, higher_is_better=True) is None


def test_summary_numbers(tmp_path: Path):
    tables = build_tables(collect(write_runs(tmp_path, grid())))
    s = tables["summary"].set_index(["task", "model"])
    assert len(s) == 4
    assert s.loc[("ptb", "lstm"), "value"] == pytest.approx(190.0)
    assert s.loc[("ptb", "lstm"), "std"] == pytest.approx(math.sqrt(200.0))  # sample std of 180, 200
    assert s.loc[("ptb", "lstm"), "n_seeds"] == 2
    assert s.loc[("rt", "transformer"), "value"] == pytest.approx(0.81)
    assert s.loc[("rt", "transformer"), "std"] == pytest.approx(math.sqrt(0.0002))
    assert s.loc[("ptb", "tcn"), "std"] == pytest.approx(0.0)
    flags = s["at_chance"].to_dict()
    assert flags == {("ptb", "lstm"): False, ("ptb", "tcn"): True, ("rt", "transformer"): False, ("rt", "lstm"): True}
    assert s.loc[("ptb", "lstm"), "train_tokens_per_s"] == pytest.approx(1500.0)  # mean of 1000, 2000
    assert s.loc[("ptb", "lstm"), "infer_tokens_per_s"] == 85000.0
    assert s.loc[("ptb", "lstm"), "infer_length"] == 128
    # ranked best first within each task
    assert list(tables["summary"]["model"]) == ["lstm", "tcn", "transformer", "lstm"]

    b = tables["buckets"].set_index(["task", "model", "bucket"])
    assert b.loc[("ptb", "lstm", "1-16"), "value"] == pytest.approx(270.0)
    assert b.loc[("rt", "transformer", "33-64"), "value"] == pytest.approx(0.91)
    assert math.isnan(b.loc[("rt", "transformer", "65-128"), "value"])
    assert b.loc[("rt", "transformer", "65-128"), "count"] == 0


# ----------------------------------------------------------------------------- artifacts


def test_write_report_artifacts(project: Path):
    out = project / "reports"
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4
    assert {"task", "model", "params_backbone", "params_total", "flops_per_token", "metric", "value", "std",
            "n_seeds", "baseline", "at_chance", "train_tokens_per_s", "infer_tokens_per_s"} <= set(summary.columns)

    buckets = pd.read_csv(out / "buckets.csv")
    assert len(buckets) == 4 * len(EDGES)
    assert {"task", "model", "bucket", "bucket_hi", "metric", "value", "count"} <= set(buckets.columns)
    assert sorted(buckets["bucket_hi"].unique()) == EDGES

    speed = pd.read_csv(out / "speed.csv")
    assert len(speed) == 4 * len(EDGES)
    assert list(speed.columns[:6]) == ["task", "model", "length", "infer_tokens_per_s", "latency_ms", "peak_mem_mb"]
    assert speed["peak_mem_mb"].isna().sum() == 1  # the tcn cell that was not measured

    for task in ("ptb", "rt"):
        for kind in report.PLOT_KINDS:
            png = out / "plots" / f"{task}_{kind}.png"
            data = png.read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 5000, png

    flat = json.loads((out / "summary.json").read_text())
    assert flat["ptb/lstm/ppl"] == pytest.approx(190.0)
    assert flat["rt/transformer/acc"] == pytest.approx(0.81)
    assert flat["rt/lstm/acc_std"] == pytest.approx(math.sqrt(0.000072))
    assert "ptb/tcn/infer_tokens_per_s" in flat and "ptb/tcn/params_backbone" in flat
    assert all(isinstance(v, (int, float)) for v in flat.values())

    md = (out / "report.md").read_text()
    assert md.count(AT_CHANCE) == 2 + 1  # two flagged rows + the "how to read" paragraph
    for text in ("## Task `ptb`", "## Task `rt`", "reference point for ptb", "190.0 ± 14.1", "560.0 ± 0.0 ", "0.810 ± 0.014",
                 "| examples | 100 | 100 | 200 | 400 |", "| examples | 10 | 20 | 5 | 0 |",
                 "(plots/ptb_metric_by_bucket.png)", "(plots/rt_memory_by_length.png)", "git `abc1234`",
                 "batch size 8 on cpu", "85k (128)"):
        assert text in md, text


def test_missing_runs_error(tmp_path: Path):
    with pytest.raises(ReportError, match="dvc repro") as e:
        collect(tmp_path / "runs")
    assert str(tmp_path / "runs") in str(e.value) and "python -m pipeline evaluate" in str(e.value)


@pytest.mark.parametrize("break_it, key", [
    (lambda r: r["params"].pop("total"), "params.total"),
    (lambda r: r.update(schema_version=2), "schema_version"),
    (lambda r: r["seeds"][0].pop("overall"), "seeds[0].overall"),
    (lambda r: r.update(count=[1, 2]), "count"),
])
def test_malformed_eval_names_file_and_key(tmp_path: Path, break_it, key):
    results = grid()
    break_it(results[1])
    runs = write_runs(tmp_path, results)
    with pytest.raises(ReportError) as e:
        collect(runs)
    assert str(runs / "ptb" / "tcn" / "eval.json") in str(e.value) and f"'{key}'" in str(e.value)


def test_main_reads_paths_from_config(tmp_path: Path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    from pipeline.config import Config

    monkeypatch.delenv("WANDB_MODE", raising=False)
    write_runs(tmp_path, grid())
    cfg = OmegaConf.structured(Config)
    cfg.paths.runs, cfg.paths.reports = str(tmp_path / "runs"), str(tmp_path / "out")  # absolute beats ROOT
    cfg.logger.mode = "disabled"
    report.main(cfg)
    assert (tmp_path / "out" / "report.md").exists()
    assert "4 runs over 2 tasks" in capsys.readouterr().out
    cfg.paths.runs = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="nowhere"):
        report.main(cfg)


# ----------------------------------------------------------------------------- W&B


def test_resolve_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr("pipeline.wandb_mode._logged_in", lambda: False)
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.setattr("pipeline.wandb_mode._logged_in", lambda: True)
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # the environment wins over the config
    assert resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_mode("auto")


def test_wandb_offline_run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    results = collect(write_runs(tmp_path, grid()))
    wandb_dir = tmp_path / "wb"
    write_report(results, tmp_path / "reports", experiment="unit",
                 wandb=WandbTarget(mode="auto", project="seqarena-test", dir=wandb_dir))
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb")), runs
    logged = {p.name.split("_table")[0] for p in runs[0].glob("files/media/table/*.table.json")}
    assert logged == {"summary", "buckets", "speed"}
    assert len(list(runs[0].glob("files/media/images/plots/*.png"))) == 6


# ----------------------------------------------------------------------------- notebook


def test_notebook_executes(project: Path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook with outputs cleared"
    monkeypatch.setenv("SEQARENA_ROOT", str(project))
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(project)}}).execute()
    last = nb.cells[-1].outputs[0]["data"]["text/plain"]
    # best per bucket: lstm wins every ptb bucket, transformer every non-empty rt bucket
    assert "lstm" in last and "transformer" in last and "65-128" in last
