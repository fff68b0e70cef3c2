"""End to end, in-process, for the task kinds beyond ptb/rt: the real train and evaluate stages
(smoke profile, the small tokenized data of conftest.TEST_TASKS) on one small model per task, then
the report over all of them. eval.json must carry what the report shows: per-bucket counts that
sum to the test set, BLEU, chrF, the sacreBLEU signature and samples for translation, and the
length-extrapolation splits for synthetic tasks.
"""
import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import TEST_TASKS
from pipeline import paths
from pipeline.config import load
from pipeline.data.datamodule import SequenceData, read_meta, tokenized_dir
from pipeline.report.collect import collect, validate
from pipeline.report.write import write_report
from pipeline.stages import evaluate, train

RUNS = [("mqar", "transformer"), ("listops", "transformer"), ("pl-reviews", "transformer"),
        ("bible-ende", "transformer"), ("bible-ende", "transformer-seq2seq")]
# Fewer than the synthetic tasks' 32 test examples, so the counts must follow the evaluation cap.
EVAL_EXAMPLES = 16

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tokenize):
    """run(task, model) -> (cfg, eval.json) after the train and evaluate stages; each pair runs once."""
    runs = tmp_path_factory.mktemp("runs")
    done = {}

    def run(task: str, model: str):
        if (task, model) not in done:
            cfg = load([f"task={task}", f"model={model}", "profile=smoke", "logger=none", f"paths.runs={runs}",
                        f"paths.tokenized={tokenize(task)}", f"data.max_eval_examples={EVAL_EXAMPLES}",
                        *TEST_TASKS[task]])
            train.main(cfg)
            evaluate.main(cfg)
            done[(task, model)] = cfg, json.loads((runs / task / model / "eval.json").read_text())
        return done[(task, model)]

    run.runs = runs
    return run


def scored(split, kind: str) -> int:
    """What the test metric counts: target positions for recall, else examples (documents, sentences)."""
    if kind == "recall":
        return sum(int((split[i]["targets"] >= 0).sum()) for i in range(len(split)))
    return len(split)


@pytest.mark.parametrize("task, model", RUNS, ids=[f"{t}-{m}" for t, m in RUNS])
def test_eval_json_counts_sum_to_the_test_set(smoke, task, model):
    cfg, result = smoke(task, model)
    validate(result, f"{task}/{model}/eval.json")  # what the report stage accepts
    assert (result["task"], result["model"], result["task_kind"]) == (task, model, cfg.task.kind)
    test = SequenceData(cfg, seed=0).split("test")
    assert len(test) == EVAL_EXAMPLES
    assert sum(result["count"]) == scored(test, cfg.task.kind) > 0
    assert all(s["count"] == result["count"] for s in result["seeds"])
    filled = [v for v, c in zip(result["per_bucket"], result["count"]) if c > 0]
    assert filled and all(v is not None and math.isfinite(v) for v in filled)


@pytest.mark.parametrize("model", ["transformer", "transformer-seq2seq"])
def test_translation_eval_has_bleu_chrf_signature_and_samples(smoke, model):
    cfg, result = smoke("bible-ende", model)
    assert result["metric"] == "bleu" and result["higher_is_better"] is True
    assert 0 <= result["overall"] <= 100 and result["overall"] == result["seeds"][0]["overall"]
    assert 0 <= result["chrf"] <= 100 and result["chrf"] == result["seeds"][0]["chrf"]
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|")
    assert result["target_ppl"] > 1 and math.isfinite(result["target_ppl"])
    assert result["baseline"]["name"] == "copy the source"
    assert result["decoding"] == {"beam_size": cfg.eval.beam_size, "no_repeat_ngram": cfg.eval.no_repeat_ngram,
                                  "examples": EVAL_EXAMPLES}
    directory = tokenized_dir(cfg)
    sources = (directory / "test.src.txt").read_text(encoding="utf-8").splitlines()
    references = (directory / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    samples = result["samples"]
    assert 0 < len(samples) <= EVAL_EXAMPLES
    for i, sample in enumerate(samples):  # the first test sentences, in order
        assert (sample["source"], sample["reference"]) == (sources[i], references[i])
        assert isinstance(sample["hypothesis"], str)


@pytest.mark.parametrize("task", ["mqar", "listops"])
def test_synthetic_eval_has_length_extrapolation(smoke, task):
    cfg, result = smoke(task, "transformer")
    meta = read_meta(cfg)
    splits = meta["extra_test_splits"]
    pairs = [f"test_{k}pairs" for k in cfg.task.synthetic.sweep_pairs]
    assert set(result["extrapolation"]) == set(splits) == {"test_2x", "test_4x", *pairs}
    assert bool(pairs) == (task == "mqar")
    dm = SequenceData(cfg, seed=0)
    examples = paths.run_dir(cfg) / "examples"
    for split in splits:
        extra = result["extrapolation"][split]
        assert extra["examples"] == len(dm.split(split)) == EVAL_EXAMPLES
        assert extra["interval"]["lo"] <= extra["overall"] <= extra["interval"]["hi"]  # bootstrap, one seed
        assert 0 <= extra["overall"] <= 1
        assert (examples / f"seed0.{split}.npz").exists()  # its per-example outcomes, for re-checking
        if split in pairs:
            k = int(split[len("test_"):-len("pairs")])
            assert extra["num_pairs"] == k and extra["chance"] == round(1 / k, 4)
            assert extra["length"] == cfg.task.synthetic.seq_len
            continue
        factor = int(split.removeprefix("test_").removesuffix("x"))
        assert extra["length"] == meta["split_lengths"][split] == factor * cfg.task.synthetic.seq_len
        lengths = dm.split(split).lengths
        assert lengths.max() > cfg.task.max_len  # really longer than training: evaluated untruncated
    assert result["baseline"]["name"] in ("chance", "majority class", "no recall (the most frequent value present)")


def test_report_over_the_smoke_runs(smoke, tmp_path):
    for task, model in RUNS:
        smoke(task, model)
    written = write_report(collect(smoke.runs), tmp_path / "reports")
    md = written["report.md"].read_text()
    for task in {t for t, _ in RUNS}:
        assert f"## Task `{task}`" in md
    translation = md.split("## Task `bible-ende`")[1].split("\n## ")[0]
    assert "| chrF [95% interval] |" in translation and "sacreBLEU signature: `nrefs:1" in translation
    assert "### Sample translations" in translation
    for task in ("mqar", "listops"):
        assert "### Length extrapolation" in md.split(f"## Task `{task}`")[1].split("\n## ")[0]
    extrapolation = pd.read_csv(written["extrapolation.csv"])
    assert sorted(set(extrapolation["task"])) == ["listops", "mqar"]
    length = extrapolation[extrapolation["sweep"] == "length"]
    assert length.groupby("task")["split"].apply(sorted).to_dict() == {
        t: ["test", "test_2x", "test_4x"] for t in ("listops", "mqar")}
    pairs = extrapolation[extrapolation["sweep"] == "pairs"]
    assert set(pairs["task"]) == {"mqar"} and sorted(set(pairs["num_pairs"])) == [2, 4, 8]  # 4: the test split
    assert "### Recall vs number of key-value pairs" in md.split("## Task `mqar`")[1].split("\n## ")[0]
    assert np.isfinite(extrapolation["value"]).all()
    flat = json.loads(written["summary.json"].read_text())
    assert {"mqar/transformer/acc_test_2x", "listops/transformer/acc_test_4x",
            "bible-ende/transformer-seq2seq/chrf", "bible-ende/transformer/bleu"} <= set(flat)


@pytest.mark.parametrize("task, model", RUNS, ids=[f"{t}-{m}" for t, m in RUNS])
def test_per_example_outcomes_reproduce_the_metric_and_carry_its_interval(smoke, task, model):
    """examples/seed0.npz gives back the reported metric (exp of mean NLL for perplexity); eval.json
    holds a 95% interval around it, overall and per bucket (bootstrap over the test examples)."""
    from pipeline import outcomes

    cfg, result = smoke(task, model)
    scored_units = outcomes.load(smoke.runs / task / model / "examples" / "seed0.npz")
    assert len(scored_units["values"]) > 0 and scored_units["weights"].min() > 0
    interval = result["overall_interval"]
    assert interval["lo"] <= interval["value"] <= interval["hi"] and "bootstrap" in interval["method"]
    if result["metric"] != "bleu":  # translation's values are the target-side NLL; BLEU is corpus-level
        mean = float((scored_units["values"] * scored_units["weights"]).sum() / scored_units["weights"].sum())
        value = math.exp(mean) if result["metric"] == "ppl" else mean
        assert value == pytest.approx(result["overall"], rel=1e-4)
    for count, bucket in zip(result["count"], result["per_bucket_interval"]):
        assert (bucket is None) == (count == 0)


def test_translation_hypotheses_are_saved_and_rescored_by_the_sacrebleu_cli(smoke):
    import subprocess
    import sys
    from pathlib import Path

    cfg, result = smoke("bible-ende", "transformer-seq2seq")
    examples = smoke.runs / "bible-ende" / "transformer-seq2seq" / "examples"
    hyps = (examples / "seed0.hyp.txt").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == EVAL_EXAMPLES
    sacrebleu = Path(sys.executable).parent / "sacrebleu"
    out = subprocess.run([str(sacrebleu), str(examples / "seed0.ref.txt"), "-i", str(examples / "seed0.hyp.txt"),
                          "-m", "bleu", "-b", "-w", "4"], capture_output=True, text=True, check=True).stdout
    assert float(out.strip()) == pytest.approx(result["overall"], abs=1e-4)
    assert result["overall_interval"]["method"].startswith("sacreBLEU bootstrap")


@pytest.mark.parametrize("task, model", RUNS, ids=[f"{t}-{m}" for t, m in RUNS])
def test_every_checkpoint_loads_with_weights_only(smoke, task, model):
    """The checkpoint the train stage keeps (best.ckpt: weights and hyperparameters, no loop counters)
    holds tensors and plain types only: torch.load with weights_only=True reads it, so evaluate never
    needs to unpickle arbitrary objects (resume reads last.ckpt the same way: tests/test_resume.py)."""
    import torch

    smoke(task, model)
    seed0 = smoke.runs / task / model / "ckpt" / "seed0"
    checkpoint = torch.load(seed0 / "best.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["state_dict"] and checkpoint["hyper_parameters"]["config"]["task"]["name"] == task
    assert "loops" not in checkpoint and not (seed0 / "last.ckpt").exists()
    assert json.loads((seed0 / "result.json").read_text())["seed"] == 0


@pytest.mark.parametrize("task, model", [("mqar", "transformer"), ("bible-ende", "transformer-seq2seq")])
def test_best_ckpt_loads_into_the_plain_module_as_into_the_lightning_one(smoke, task, model):
    """Evaluate and measure load best.ckpt into the kind's plain TaskModule (no Lightning); its keys
    and outputs are those of the LightningModule the train stage wrote it from."""
    import torch

    from pipeline.tasks.checkpoint import load_best
    from pipeline.tasks.trainable import trainable

    cfg, _ = smoke(task, model)
    plain = load_best(cfg, 0)
    assert not isinstance(plain, __import__("lightning").LightningModule)
    trained = trainable(type(plain)).load_from_checkpoint(smoke.runs / task / model / "ckpt" / "seed0" / "best.ckpt",
                                                          map_location="cpu", weights_only=True).eval()
    assert list(plain.state_dict()) == list(trained.state_dict())
    batch = next(iter(SequenceData(cfg).loader("test")))
    with torch.no_grad():
        for mine, theirs in zip(plain.per_example(batch), trained.per_example(batch)):
            assert torch.equal(mine, theirs)


def test_evaluate_runs_and_gives_the_same_bytes_without_lightning(smoke):
    """The evaluate stage, in a process where Lightning and torchmetrics cannot be imported, rewrites
    eval.json and the per-example outcomes with the same bytes."""
    import subprocess
    import sys

    from pipeline.config import ROOT

    task, model = "mqar", "transformer"
    cfg, _ = smoke(task, model)
    out = smoke.runs / task / model
    files = [out / "eval.json", out / "metrics.json", *sorted((out / "examples").iterdir())]
    before = {f: f.read_bytes() for f in files}
    blocked = "import sys; sys.modules.update(lightning=None, torchmetrics=None); from pipeline.cli import main; "
    args = ["evaluate", f"task={task}", f"model={model}", "profile=smoke", "logger=none", f"paths.runs={smoke.runs}",
            f"paths.tokenized={cfg.paths.tokenized}", f"data.max_eval_examples={EVAL_EXAMPLES}", *TEST_TASKS[task]]
    done = subprocess.run([sys.executable, "-c", blocked + f"sys.exit(main({args!r}))"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {f: f.read_bytes() for f in files} == before


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, tokenize):
    """run(task, model) -> the report's collected result after train and evaluate with seeds 0 and 1."""
    runs, logs = tmp_path_factory.mktemp("runs-two-seeds"), tmp_path_factory.mktemp("logs-two-seeds")

    def run(task: str, model: str) -> dict:
        cfg = load([f"task={task}", f"model={model}", "profile=smoke", "logger=none", f"paths.runs={runs}",
                    f"paths.logs={logs}",  # not the smoke runs' training logs
                    f"paths.tokenized={tokenize(task)}", f"data.max_eval_examples={EVAL_EXAMPLES}", "seeds=[0,1]",
                    *TEST_TASKS[task]])
        train.main(cfg)
        evaluate.main(cfg)
        return next(r for r in collect(runs) if (r["task"], r["model"]) == (task, model))

    return run


@pytest.mark.parametrize("task, model", [("mqar", "transformer"), ("bible-ende", "transformer")])
def test_eval_json_intervals_are_the_reports_estimand(two_seeds, task, model):
    """#21: eval.json's intervals (overall, per bucket, extra splits; chrF for translation) are the estimand the
    report computes from the outcomes, with the same numbers, so the report uses them as they are: two seeds,
    so the seed stage is in them; each seed keeps its own interval over the test examples."""
    import copy

    from pipeline.report import significance

    result = two_seeds(task, model)
    recomputed = copy.deepcopy(result)
    significance.one_estimand(recomputed, recompute=True)
    fields = ["overall_interval", "per_bucket_interval", *(["chrf_interval"] if result["metric"] == "bleu" else [])]
    for field in fields:
        assert result[field] == recomputed[field], field
    assert result["overall_interval"]["seeds"] == 2 and result["overall_interval"]["seed_variation"]
    assert result["overall_interval"]["method"].startswith("two-stage")
    for split, entry in (result.get("extrapolation") or {}).items():
        assert entry["interval"] == recomputed["extrapolation"][split]["interval"], split
        assert entry["interval"]["seeds"] == 2
    assert bool(result.get("extrapolation")) == (task == "mqar")
    kept = copy.deepcopy(result)
    significance.one_estimand(kept)  # what the report does: eval.json's intervals as they are
    assert kept == result
    for s in result["seeds"]:  # W&B's per-seed summary and the report's fallback read these
        assert s["interval"]["lo"] <= s["interval"]["hi"]
        assert len(s["per_bucket_interval"]) == len(result["buckets"]["edges"])
