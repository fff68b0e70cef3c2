"""Report stage: aggregation, tables, plots, W&B logging and the comparison notebook.

Built on hand-written eval.json files (2 tasks x 2 models, 2 seeds each) with numbers chosen so the
derived values are easy to check by hand. No torch or Lightning needed.
"""
from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.collect import ReportError, collect
from pipeline.report.format import SAMPLES_PER_MODEL, fmt_metric
from pipeline.report.plots import PLOT_KINDS
from pipeline.report.tables import AT_CHANCE, at_chance, build_tables
from pipeline.report.tracking import WandbTarget
from pipeline.report.write import write_report
from pipeline.stages import report
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
        "artifact": "eval_result", "schema": 2, "task": task, "task_kind": kind, "model": model, "backbone": model,
        "metric": metric, "higher_is_better": higher, "config": {"task": {"name": task}},
        "params": {"total": 1_534_210, "backbone": 526_336, "embedding_and_head": 1_007_874},
        "sizing": {"budget_params": 500_000, "d_model": 128, "budget_error": 0.05, "backbone_params": 526_336},
        "flops_per_token": 1.05e6, "receptive_field": None,
        "env": {"torch": "2.13.0+cpu", "device": "cpu", "cpu": "Test CPU", "threads": 2},
        "baseline": {"name": baseline[0], "value": baseline[1]},
        "reference": f"reference point for {task}",
        "buckets": {"edges": EDGES, "labels": LABELS, "unit": "context position" if kind == "lm" else "document tokens"},
        "seeds": [{"seed": k, "overall": overall, "per_bucket": pb, "count": count, "train": {"steps": 10}}
                  for k, (overall, pb) in enumerate(seeds)],
        "overall": sum(s[0] for s in seeds) / len(seeds), "overall_std": 0.0,
        "per_bucket": per_bucket_mean, "count": count,
        "speed": {"lengths": EDGES, "batch_size": 8, "device": "cpu",
                  "infer_tokens_per_s": [50000.0, 70000.0, 80000.0, 85000.0], "latency_ms": [2.5, 3.6, 6.4, 12.0],
                  "peak_mem_mb": peak_mem or [1.2, 2.3, 4.8, 9.9]},
        "train_speed": {"length": 128, "batch_size": 32, "tokens_per_s": 1500.0, "step_ms": 2730.0, "peak_mem_mb": 50.0},
    }


# What the measure stage writes (speed.json); the rest is evaluate's eval.json.
MEASURED = ("speed", "train_speed", "env")


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
        (d / "eval.json").write_text(json.dumps({k: v for k, v in r.items() if k not in MEASURED}))
        if "speed" in r:
            (d / "speed.json").write_text(json.dumps({
                "artifact": "speed_result", "schema": 1, "task": r["task"], "model": r["model"], "profile": "cpu",
                "env": r["env"], "infer": r["speed"], "train": r["train_speed"]}))
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
    assert at_chance(11.5, 10.0, higher_is_better=True, metric="bleu")  # 0-100 metrics: within 2 points
    assert not at_chance(12.5, 10.0, higher_is_better=True, metric="bleu")
    assert at_chance(0.26, 0.15, higher_is_better=True, metric="bleu")  # a tiny BLEU is still on 0-100
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
    assert s.loc[("ptb", "lstm"), "train_tokens_per_s"] == pytest.approx(1500.0)  # speed.json: one training step at the task's shapes
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
        for kind in PLOT_KINDS:
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
                 "(plots/ptb_metric_by_bucket.png)", "(plots/rt_memory_by_length.png)", "measured with torch 2.13.0+cpu",
                 "batch size 8 on cpu", "85k (128)"):
        assert text in md, text


def test_missing_runs_error(tmp_path: Path):
    with pytest.raises(ReportError, match="dvc repro") as e:
        collect(tmp_path / "runs")
    assert str(tmp_path / "runs") in str(e.value) and "python -m pipeline evaluate" in str(e.value)


@pytest.mark.parametrize("break_it, key", [
    (lambda r: r["params"].pop("total"), "params.total"),
    (lambda r: r.update(schema=1), "schema"),
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
    params = tmp_path / "params.yaml"  # the grid of these runs, whatever the repository's params.yaml holds
    params.write_text("profile: cpu\nseeds: [0, 1]\nruns:\n" + "".join(
        f"  {r['model']}-{r['task']}: {{model: {r['model']}, task: {r['task']}}}\n" for r in grid()))
    monkeypatch.setattr("pipeline.config.PARAMS", params)
    cfg = OmegaConf.structured(Config)
    cfg.paths.runs, cfg.paths.reports = str(tmp_path / "runs"), str(tmp_path / "out")  # absolute beats ROOT
    cfg.logger.mode = "disabled"
    report.main(cfg)
    assert (tmp_path / "out" / "report.md").exists()
    assert "4 runs over 2 tasks" in capsys.readouterr().out
    cfg.paths.runs = str(tmp_path / "nowhere")
    with pytest.raises(ReportError, match="nowhere"):  # the CLI prints it on one line and exits 2
        report.main(cfg)


# ----------------------------------------------------------------------------- W&B


def test_resolve_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr("pipeline.wandb_mode._logged_in", lambda: False)
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.setattr("pipeline.wandb_mode._logged_in", lambda: True)
    with socket.socket() as server:  # a reachable "W&B service": auto goes online
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # the environment wins over the config
    assert resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_mode("auto")


def test_resolve_mode_auto_without_network_is_offline(monkeypatch, capsys):
    """A key but an unreachable W&B service: `auto` logs offline within seconds (was a 98 s failure)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # dummy credentials
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    assert resolve_mode("auto") == "offline"
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "offline" in err[0]
    assert resolve_mode("online") == "online"  # an explicit choice is never second-guessed


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
    # no benchmark results here: the bench, complexity and crossover tables are empty and left out
    assert logged == {"summary", "buckets", "speed", "verdict"}
    assert len(list(runs[0].glob("files/media/images/plots/*.png"))) == 6 + 2  # + one Pareto plot per task


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


# ----------------------------------------------------------------------------- task breadth: translation,
# length extrapolation, receptive field (optional eval.json fields, written as evaluate.py writes them)

SOURCES = ["In the beginning God created the heavens and the earth.", "And God said, Let there be light.",
           "The <unk> was | without form.", "And the evening and the morning were the first day."]
REFERENCES = ["Im Anfang schuf Gott die Himmel und die Erde.", "Und Gott sprach: Es werde Licht!",
              "Und die Erde war wüst und leer.", "Und es ward Abend und es ward Morgen: erster Tag."]


def translation_eval(model: str, hypotheses: list[str], receptive_field=None) -> dict:
    """An eval.json of a translation run: BLEU (the metric) and chrF scored by sacreBLEU as in
    pipeline/stages/translation_eval.py, over REFERENCES."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu_metric = BLEU()
    bleu = bleu_metric.corpus_score(hypotheses, [REFERENCES]).score
    chrf = CHRF().corpus_score(hypotheses, [REFERENCES]).score
    r = make_eval("bible-ende", model, [(bleu, [bleu, None, None, None])], kind="translate", metric="bleu",
                  higher=True, baseline=("copy the source", 1.2), count=[len(REFERENCES), 0, 0, 0])
    if model == "transformer":  # as evaluate writes it; the other run is an older eval.json without one
        from pipeline.stats import chrf_interval

        found = chrf_interval(hypotheses, REFERENCES, n_boot=200)
        r["chrf_interval"] = {"lo": found["lo"], "hi": found["hi"], "method": "sacreBLEU bootstrap"}
    r.update(chrf=chrf, target_ppl=35.0, bleu_signature=str(bleu_metric.get_signature()),
             decoding={"beam_size": 1, "examples": len(REFERENCES)}, receptive_field=receptive_field,
             samples=[{"source": s, "reference": t, "hypothesis": h}
                      for s, t, h in zip(SOURCES, REFERENCES, hypotheses)])
    return r


TRAIN_LEN, N_TEST, QUERIES = 64, 40, 16  # MQAR: trained length, test sequences, queries per sequence


def synthetic_eval(model: str, test_acc: float, acc_2x: float, acc_4x: float, receptive_field=None) -> dict:
    """An eval.json of an MQAR run trained at TRAIN_LEN, with test_2x / test_4x results."""
    r = make_eval("mqar", model, [(test_acc, [None, None, test_acc, None])], kind="recall", metric="acc",
                  higher=True, baseline=("chance", 1 / 64), count=[0, 0, QUERIES * N_TEST, 0])
    r["config"]["task"].update(max_len=TRAIN_LEN, synthetic={"seq_len": TRAIN_LEN, "n_test": N_TEST})
    r["receptive_field"] = receptive_field
    r["extrapolation"] = {split: {"length": k * TRAIN_LEN, "examples": N_TEST, "overall": acc}
                          for split, k, acc in (("test_2x", 2, acc_2x), ("test_4x", 4, acc_4x))}
    return r


HYPOTHESES = {
    "transformer": ["Im Anfang schuf Gott Himmel und Erde.", "Und Gott sprach: Es werde Licht!",
                    "Und die Erde war *wüst* und <unk>.", "Und es ward Abend und Morgen: der erste Tag."],
    "lstm": ["Im Anfang Gott.", "Und Gott sprach.", "", "Und es ward Abend."],
}
RF = {"transformer": {"tokens": TRAIN_LEN, "measured_at": TRAIN_LEN, "full": True},  # as evaluate writes it
      "lstm": {"tokens": 23, "measured_at": TRAIN_LEN, "full": False},
      "tcn": 31}  # older eval.json: a plain int


def breadth_grid() -> list[dict]:
    return [translation_eval(m, h, RF[m]) for m, h in HYPOTHESES.items()] + [
        synthetic_eval("transformer", 0.98, 0.61, 0.20, RF["transformer"]),
        synthetic_eval("lstm", 0.40, 0.22, 0.10, RF["lstm"]),
        synthetic_eval("tcn", 0.30, 0.25, None, RF["tcn"]),  # test_4x not measured
    ]


@pytest.fixture
def breadth(tmp_path: Path) -> tuple[list[dict], Path]:
    results = collect(write_runs(tmp_path, breadth_grid()))
    write_report(results, tmp_path / "reports", experiment="breadth")
    return results, tmp_path / "reports"


def md_section(md: str, task: str, heading: str) -> str:
    """The text of `### heading` inside `## Task `task``."""
    task_part = md.split(f"## Task `{task}`")[1].split("\n## ")[0]
    return task_part.split(f"### {heading}")[1].split("\n### ")[0]


def table_row(section: str, first_cell: str) -> list[str]:
    line = next(line for line in section.splitlines() if line.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_translation_summary_has_chrf_signature_and_decoding(breadth):
    results, out = breadth
    md = (out / "report.md").read_text()
    summary = md_section(md, "bible-ende", "Summary")
    header = table_row(summary, "model")
    assert header[4:7] == ["receptive field", "bleu [95% interval]", "chrF [95% interval]"]
    assert len(table_row(summary, ":--")) == len(header)  # the alignment row has a cell per column
    for r in (r for r in results if r["task"] == "bible-ende"):
        row = table_row(summary, r["model"])
        chrf = fmt_metric(r["chrf"])
        if r.get("chrf_interval"):
            lo, hi = r["chrf_interval"]["lo"], r["chrf_interval"]["hi"]
            assert lo <= r["chrf"] <= hi and lo < hi
            chrf += f" [{fmt_metric(lo, like=r['chrf'])}, {fmt_metric(hi, like=r['chrf'])}]"
        assert row[5] == fmt_metric(r["overall"]) and row[6] == chrf
    assert f"sacreBLEU signature: `{results[0]['bleu_signature']}`." in summary
    assert f"Decoding: greedy, {len(REFERENCES)} test sentences." in summary
    assert "chrF" not in table_row(md_section(md, "mqar", "Summary"), "model")  # translation only

    csv = pd.read_csv(out / "summary.csv").set_index(["task", "model"])
    flat = json.loads((out / "summary.json").read_text())
    for r in results:
        if r["task"] == "bible-ende":
            assert csv.loc[("bible-ende", r["model"]), "chrf"] == pytest.approx(r["chrf"])
            assert flat[f"bible-ende/{r['model']}/chrf"] == pytest.approx(r["chrf"])
            assert flat[f"bible-ende/{r['model']}/bleu"] == pytest.approx(r["overall"])
        else:
            assert math.isnan(csv.loc[("mqar", r["model"]), "chrf"])
            assert f"mqar/{r['model']}/chrf" not in flat


def test_sample_translations_are_escaped_and_capped(breadth):
    _, out = breadth
    samples = md_section((out / "report.md").read_text(), "bible-ende", "Sample translations")
    rows = [line for line in samples.splitlines() if line.startswith("| ") and not line.startswith(("| model", "| :--"))]
    assert len(rows) == len(HYPOTHESES) * SAMPLES_PER_MODEL  # 4 samples each, 3 shown
    assert [table_row(samples, m)[:2] for m in HYPOTHESES] == [[m, "1"] for m in HYPOTHESES]
    assert SOURCES[-1] not in samples
    # markdown specials are literal: the table keeps its columns, <unk> is not an HTML tag, no emphasis
    assert "The \\<unk\\> was \\| without form." in samples
    assert "\\*wüst\\* und \\<unk\\>." in samples
    assert all(row.count(" | ") == 4 for row in rows)
    assert "*(empty)*" in samples  # lstm's empty third hypothesis


def test_length_extrapolation_table_csv_and_metrics(breadth):
    results, out = breadth
    synthetic = {r["model"]: r for r in results if r["task"] == "mqar"}
    csv = pd.read_csv(out / "extrapolation.csv")
    assert list(csv.columns) == ["task", "model", "sweep", "split", "length", "num_pairs", "value", "lo", "hi", "examples", "chance"]
    assert set(csv["task"]) == {"mqar"} and len(csv) == 3 * len(synthetic)
    by = csv.set_index(["model", "split"])
    for model, r in synthetic.items():
        assert by.loc[(model, "test"), "length"] == TRAIN_LEN
        assert by.loc[(model, "test"), "value"] == pytest.approx(r["seeds"][0]["overall"])
        for split, s in r["extrapolation"].items():
            assert by.loc[(model, split), "length"] == s["length"]
            assert by.loc[(model, split), "examples"] == s["examples"]
            if s["overall"] is None:
                assert math.isnan(by.loc[(model, split), "value"])
            else:
                assert by.loc[(model, split), "value"] == pytest.approx(s["overall"])

    section = md_section((out / "report.md").read_text(), "mqar", "Length extrapolation")
    assert table_row(section, "model \\ length")[1:] == [f"{TRAIN_LEN} (trained)", f"{2 * TRAIN_LEN} (2× trained)",
                                                         f"{4 * TRAIN_LEN} (4× trained)"]
    for model, r in synthetic.items():
        values = [r["seeds"][0]["overall"], r["extrapolation"]["test_2x"]["overall"],
                  r["extrapolation"]["test_4x"]["overall"]]
        assert table_row(section, model)[1:] == [fmt_metric(v) for v in values]
    assert table_row(section, "examples")[1:] == [str(N_TEST)] * 3
    assert "Length extrapolation" not in md_section((out / "report.md").read_text(), "bible-ende", "Summary")

    flat = json.loads((out / "summary.json").read_text())
    assert flat["mqar/transformer/acc_test_2x"] == pytest.approx(synthetic["transformer"]["extrapolation"]["test_2x"]["overall"])
    assert flat["mqar/lstm/acc_test_4x"] == pytest.approx(synthetic["lstm"]["extrapolation"]["test_4x"]["overall"])
    assert "mqar/tcn/acc_test_4x" not in flat and "mqar/tcn/acc_test" not in flat


def test_receptive_field_column(breadth):
    _, out = breadth
    summary = md_section((out / "report.md").read_text(), "mqar", "Summary")
    assert table_row(summary, "transformer")[4] == f"full ({TRAIN_LEN})"
    assert table_row(summary, "lstm")[4] == str(RF["lstm"]["tokens"])
    assert table_row(summary, "tcn")[4] == str(RF["tcn"])
    csv = pd.read_csv(out / "summary.csv").set_index(["task", "model"])
    assert csv.loc[("mqar", "lstm"), "receptive_field"] == RF["lstm"]["tokens"]
    assert csv.loc[("mqar", "lstm"), "receptive_field_measured_at"] == TRAIN_LEN
    assert csv.loc[("mqar", "tcn"), "receptive_field"] == RF["tcn"]


def test_missing_optional_fields_render_as_dash(tmp_path: Path):
    bare = translation_eval("transformer", HYPOTHESES["transformer"])
    for key in ("chrf", "bleu_signature", "samples", "decoding", "target_ppl"):
        bare.pop(key)
    partial = translation_eval("lstm", HYPOTHESES["lstm"])
    partial["samples"] = None
    synthetic = synthetic_eval("transformer", 0.9, 0.5, 0.2)
    synthetic["extrapolation"]["test_2x"].pop("overall")
    synthetic["config"] = {}  # no trained length to show (config is a required field of eval.json)
    results = collect(write_runs(tmp_path, [bare, partial, synthetic]))
    write_report(results, tmp_path / "reports")
    md = (tmp_path / "reports" / "report.md").read_text()
    summary = md_section(md, "bible-ende", "Summary")
    assert table_row(summary, "transformer")[4] == "—"  # receptive field null
    assert table_row(summary, "transformer")[6] == "—"  # no chrF
    signature, decoding = (next(line for line in summary.splitlines() if line.startswith(label))
                           for label in ("sacreBLEU signature:", "Decoding:"))
    assert f"lstm `{partial['bleu_signature']}`" in signature and "transformer —" in signature
    assert "lstm greedy" in decoding and "transformer —" in decoding
    assert "No sample translations" in md_section(md, "bible-ende", "Sample translations")
    section = md_section(md, "mqar", "Length extrapolation")
    assert table_row(section, "model \\ length")[1] == "?"
    assert table_row(section, "transformer")[2] == "—"
    assert "mqar/transformer/acc_test_2x" not in json.loads((tmp_path / "reports" / "summary.json").read_text())


def test_extrapolation_csv_is_written_without_synthetic_tasks(project: Path):
    """An output DVC declares must exist even when the grid has no task with extrapolation splits."""
    csv = pd.read_csv(project / "reports" / "extrapolation.csv")
    assert csv.empty and list(csv.columns) == ["task", "model", "sweep", "split", "length", "num_pairs", "value", "lo", "hi", "examples", "chance"]


def test_a_hand_run_with_another_profile_is_refused_by_name(tmp_path: Path):
    results = grid()
    for r in results:
        r["config"].update(profile="cpu", model={"budget_params": 500_000})
    results[2]["config"].update(profile="smoke", model={"budget_params": 80_000})
    runs = write_runs(tmp_path, results)
    with pytest.raises(ReportError, match=r"rt/transformer/eval.json: profile 'smoke', budget_params 80000") as e:
        collect(runs)
    assert "most runs have profile 'cpu', budget_params 500000" in str(e.value)


def test_ranking_says_tied_unless_a_paired_bootstrap_separates_two_models(tmp_path: Path):
    """Per-example outcomes beside each eval.json: a planted 10-point gap on 1,000 examples is
    "better"; two models with the same predictions are "tied"."""
    import numpy as np

    from pipeline import outcomes

    acc = dict(kind="classify", metric="acc", higher=True, baseline=("majority class", 0.5), count=[250] * 4)
    rng = np.random.default_rng(0)
    base = (rng.random(1000) < 0.7).astype(np.float32)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:100]] = 1.0  # 10 points more, on the same examples
    results = [make_eval("rt", name, [(float(v.mean()), [float(v.mean())] * 4)], **acc)
               for name, v in (("lstm", better), ("tcn", base), ("transformer", base))]
    runs = write_runs(tmp_path, results)
    for name, v in (("lstm", better), ("tcn", base), ("transformer", base)):
        outcomes.save(runs / "rt" / name / "examples" / "seed0.npz",
                      {"values": v, "weights": np.ones_like(v), "bucket": np.zeros(1000, np.int16),
                       "group": np.arange(1000, dtype=np.int32)})
    summary = build_tables(collect(runs))["summary"]
    verdicts = dict(zip(summary["model"], summary["vs_next"]))
    # one seed: a difference the paired bootstrap finds is only suggested (seed variation not measured)
    assert verdicts["lstm"] == "suggested (one seed)" and "tied" in (verdicts["tcn"], verdicts["transformer"])


def test_small_buckets_are_drawn_apart_from_the_findings(tmp_path: Path):
    """A bucket with fewer than MIN_BUCKET_EXAMPLES examples is no point on the model's line: a hollow,
    faded marker, and every tick says how many examples its bucket holds."""
    from pipeline.report.format import MIN_BUCKET_EXAMPLES
    from pipeline.report.plots import _plot_metric_by_bucket
    from pipeline.report.tables import build_tables

    tables = build_tables(collect(write_runs(tmp_path, grid())))
    ptb = tables["buckets"][tables["buckets"]["task"] == "ptb"].copy()
    ptb.loc[ptb["bucket_hi"] == 128, "count"] = MIN_BUCKET_EXAMPLES - 1
    summary = tables["summary"][tables["summary"]["task"] == "ptb"]
    ax = _plot_metric_by_bucket("ptb", "ppl", summary, ptb, ["lstm", "tcn"], tmp_path / "p.png")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["lstm"].get_xdata()) == [4.0, 5.0, 6.0]  # log2 of 16, 32, 64: not 128
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
    assert len(hollow) == 2 and all(list(line.get_xdata()) == [7.0] for line in hollow)
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == f"65-128\nn={MIN_BUCKET_EXAMPLES - 1}"
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_every_interval_covers_seeds_and_test_examples(tmp_path: Path):
    """The RT case of the review: three seeds at 0.781 / 0.782 / 0.783 on 1,275 reviews. evaluate's t-interval
    over the seeds alone is [0.780, 0.784]; the report's interval also covers the test set (binomial half-width
    about 0.023), overall and per bucket, and a one-seed run says its interval is test sampling only."""
    import numpy as np

    from pipeline import outcomes
    from pipeline.report import significance

    n, rng = 1275, np.random.default_rng(7)
    acc = dict(kind="classify", metric="acc", higher=True, baseline=("majority class", 0.5), count=[n, 0, 0, 0])
    seeds = [(p, [p, None, None, None]) for p in (0.781, 0.782, 0.783)]
    three, one = make_eval("rt", "lstm", seeds, **acc), make_eval("rt", "tcn", seeds[:1], **acc)
    three["overall_interval"] = {"lo": 0.7805, "hi": 0.7835, "method": "t-interval over 3 seeds"}
    runs = write_runs(tmp_path, [three, one])
    correct = rng.random(n) < 0.782
    for model, k in (("lstm", 3), ("tcn", 1)):
        for seed in range(k):
            flip = rng.random(n) < 0.01  # seeds differ on a few reviews
            outcomes.save(runs / "rt" / model / "examples" / f"seed{seed}.npz",
                          {"values": (correct ^ flip).astype(np.float32), "weights": np.ones(n, np.float32),
                           "bucket": np.zeros(n, np.int16), "group": np.arange(n, dtype=np.int32)})
    results = {r["model"]: r for r in collect(runs)}
    for r in results.values():
        significance.one_estimand(r)
    lstm, tcn = results["lstm"]["overall_interval"], results["tcn"]["overall_interval"]
    assert lstm["method"].startswith("two-stage bootstrap") and lstm["seed_variation"]
    assert lstm["hi"] - lstm["lo"] > 0.04  # test sampling included: about ±0.023, not ±0.002
    assert results["lstm"]["per_bucket_interval"][0]["seeds"] == 3 and results["lstm"]["per_bucket_interval"][1] is None
    assert not tcn["seed_variation"] and tcn["seeds"] == 1


def test_tied_is_never_printed_beside_intervals_that_are_apart(tmp_path: Path):
    import numpy as np

    from pipeline import outcomes
    from pipeline.report import significance

    acc = dict(kind="classify", metric="acc", higher=True, baseline=("majority class", 0.5), count=[400, 0, 0, 0])
    results = [make_eval("rt", m, [(0.7, [0.7, None, None, None])], **acc) for m in ("a", "b")]
    runs = write_runs(tmp_path, results)
    same = (np.random.default_rng(1).random(400) < 0.7).astype(np.float32)
    for m in ("a", "b"):
        outcomes.save(runs / "rt" / m / "examples" / "seed0.npz", {"values": same, "weights": np.ones(400, np.float32),
                      "bucket": np.zeros(400, np.int16), "group": np.arange(400, dtype=np.int32)})
    a, b = collect(runs)
    assert significance.vs_next([a, b]) == {"a": "tied", "b": ""}
    a["overall_interval"], b["overall_interval"] = {"lo": 0.72, "hi": 0.75}, {"lo": 0.66, "hi": 0.69}  # by hand
    assert significance.vs_next([a, b]) == {"a": "unresolved", "b": ""}


def test_extrapolation_columns_mark_every_trained_length():
    """A model trained on a mixture of lengths (as Zoology trains MQAR, 64 / 128 / 256): its 128- and 256-token splits are inside the training
    range (not "2x" and "4x"), and only the 512-token split is beyond it."""
    from pipeline.report.markdown import _extrapolation_label
    from pipeline.report.tables import trained_lengths

    mixture = {"config": {"task": {"max_len": 256, "synthetic": {"seq_len": 64, "train_lengths": [64, 128, 256]}}}}
    single = {"config": {"task": {"max_len": 256, "synthetic": {"seq_len": 256}}}}
    assert trained_lengths(mixture) == [64, 128, 256] and trained_lengths(single) == [256]
    assert [_extrapolation_label(n, [64, 128, 256]) for n in (64, 128, 256, 512)] == \
        ["64 (trained)", "128 (trained)", "256 (trained)", "512 (2× trained)"]
    assert [_extrapolation_label(n, [256]) for n in (256, 512, 1024)] == \
        ["256 (trained)", "512 (2× trained)", "1024 (4× trained)"]
