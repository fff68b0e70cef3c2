"""The per-bucket verdict (quality and cost side by side) on fixture results with known answers: three
classifiers on the same 400 documents of the 65-128 bucket, and benchmark cells at n = 128."""
from pathlib import Path

import numpy as np
import pytest

from pipeline import outcomes
from pipeline.report.verdict_lengths import bucket_verdict_rows, leaders, length_split_bucket_rows, with_length_splits
from test_report import make_eval
from test_verdict import LINEAR, make_bench


def _results(tmp_path: Path) -> list[dict]:
    """a and b predict the same labels (tied), c is right on far fewer documents (resolvedly worse)."""
    acc = dict(kind="classify", metric="acc", higher=True, baseline=("majority class", 0.5), count=[0, 0, 0, 400])
    shared, poor = np.arange(400) % 10 != 0, np.arange(400) % 20 < 11  # right on 90% and 55%
    out = []
    for model, right in (("a", shared), ("b", shared), ("c", poor)):
        r = make_eval("rt", model, [(float(right.mean()), [None, None, None, float(right.mean())])], **acc)
        run = tmp_path / "runs" / "rt" / model
        outcomes.save(run / "examples" / "seed0.npz", {
            "values": right.astype(np.float32), "weights": np.ones(400, np.float32),
            "bucket": np.full(400, 3, np.int16), "group": np.arange(400, dtype=np.int32)})
        r["_path"] = str(run / "eval.json")
        out.append(r)
    return out


def _bench(**time_scale: float) -> list[dict]:
    """Single timings per cell: each ratio's interval comes from the run-to-run floor alone."""
    return [make_bench(m, LINEAR, 1.0, 1.0, 0.0, time_scale=s, mem_scale=1e-3 * (i + 1))
            for i, (m, s) in enumerate(time_scale.items())]


def test_quality_and_speed_part_ways(tmp_path):
    # c trains 5x faster than a and b (resolved), but loses 0.9 - 0.55 of accuracy
    rows = bucket_verdict_rows(_results(tmp_path), _bench(a=5e-6, b=6e-6, c=1e-6))
    assert list(rows["bucket"]) == ["65–128"]  # the only bucket with examples that the sweep also measured
    row = rows.iloc[0]
    assert row["most accurate"] == "a 0.900 ≈ b 0.900 (tied)"
    # among the tied: a 1.2x faster than b, inside the noise of two single timings
    assert row["fastest to train"].startswith("a ≈ b (within timing noise; 1.20× [")
    assert row["leanest (train step)"].startswith("a ") and "(2.00× b)" in row["leanest (train step)"]  # exact
    assert row["verdict"].startswith("a if you need quality, c if you need speed (c loses −0.350 acc; trains 5.00× [")


def test_use_x_when_one_model_is_best_and_fastest(tmp_path):
    bench = _bench(a=1e-6, b=5e-6, c=5e-6)
    bench[1]["decode"] = {"status": "no recurrent form (decoding would re-run forward on the prefix)", "cells": []}
    row = bucket_verdict_rows(_results(tmp_path), bench).iloc[0]
    assert row["verdict"] == "use a: tied for most accurate (with b) and fastest to train"
    assert row["lowest decode latency"] == "a 0.10 ms (b: no recurrent form)"  # b cannot decode: says why
    assert row["fastest to train"].startswith("a ") and "5.00× [" in row["fastest to train"]


def test_no_cost_difference_within_timing_noise(tmp_path):
    # 1.1x and 1.2x from single timings: nothing resolved, so quality alone decides
    row = bucket_verdict_rows(_results(tmp_path), _bench(a=5.5e-6, b=6e-6, c=5e-6)).iloc[0]
    assert row["verdict"] == ("no cost difference resolved (train tok/s within timing noise): "
                              "use a or b for quality")


def test_leaders_follow_the_ratio_interval():
    # (value, sd of its log): 100 vs 90 with sd 0.15 each is noise; 100 vs 40 is not; memory (sd 0) is exact
    assert leaders({"x": (100.0, 0.15), "y": (90.0, 0.15), "z": (40.0, 0.15)}, lower=False) == ["x", "y"]
    assert leaders({"x": (100.0, 0.0), "y": (101.0, 0.0)}, lower=True) == ["x"]
    assert leaders({}, lower=True) == []


def test_quality_vs_throughput_has_one_panel_per_joined_bucket(tmp_path):
    from matplotlib.image import imread

    from pipeline.report.tables import build_tables
    from pipeline.report.verdict_plots import quality_throughput_plot

    results = _results(tmp_path)
    tables = build_tables(results)
    args = (tables["summary"], tables["buckets"])
    bench = _bench(a=5e-6, b=6e-6, c=1e-6)
    path = quality_throughput_plot("rt", *args, bench, tmp_path / "plots", 30)
    assert path == tmp_path / "plots" / "rt_quality_vs_throughput.png"
    assert imread(path).shape[1] == 550  # one panel (65-128): 5 in at 110 dpi
    # a sweep without n = 128 joins no bucket: no plot
    for r in bench:
        r["cells"] = [c for c in r["cells"] if c["length"] != 128]
    assert quality_throughput_plot("rt", *args, bench, tmp_path / "other", 30) is None


def test_longer_test_splits_fill_the_buckets_beyond_the_trained_length(tmp_path):
    """A synthetic task trained at 128 and tested at 256 (test_2x): the 129-256 bucket gets a verdict row from
    the longer split, paired on that split's outcomes; a pairs sweep split at the same length does not count."""
    edges, labels = [16, 32, 64, 128, 256], ["1-16", "17-32", "33-64", "65-128", "129-256"]
    # at 128 all three are right on 90%; at 256 only c keeps it: a and b are right only on the answers past
    # position 128 (half of them, as MQAR's queries sit anywhere), 50% in all
    right = {"short": np.arange(400) % 10 != 0, "long": np.arange(400) % 2 == 1}
    long_right = {"a": right["long"], "b": right["long"], "c": right["short"]}
    long_bucket = np.where(np.arange(400) % 2 == 1, 4, 3)  # the position bucket of each answer
    out = []
    for model in ("a", "b", "c"):
        r = make_eval("selcopy", model, [(0.9, [None, None, None, 0.9])], kind="recall", metric="acc", higher=True,
                      baseline=("chance", 1 / 16), count=[0, 0, 0, 400])
        r["buckets"] = {"edges": edges, "labels": labels, "unit": "sequence length"}
        r["seeds"][0].update(per_bucket=[None, None, None, 0.9, None], count=[0, 0, 0, 400, 0])
        r.update(per_bucket=[None, None, None, 0.9, None], count=[0, 0, 0, 400, 0])
        acc_long = float(long_right[model].mean())
        r["extrapolation"] = {"test_2x": {"length": 256, "examples": 400, "overall": acc_long},
                              "test_8pairs": {"length": 256, "num_pairs": 8, "examples": 400, "overall": 0.01}}
        run = tmp_path / "runs" / "selcopy" / model
        for split, values, bucket in (("", right["short"], np.full(400, 3)), (".test_2x", long_right[model], long_bucket)):
            outcomes.save(run / "examples" / f"seed0{split}.npz", {
                "values": values.astype(np.float32), "weights": np.ones(400, np.float32),
                "bucket": bucket.astype(np.int16), "group": np.arange(400, dtype=np.int32)})
        r["_path"] = str(run / "eval.json")
        out.append(r)
    folded = with_length_splits(out[2])
    assert folded["per_bucket"][4] == pytest.approx(0.9) and folded["count"][4] == 400
    assert folded["bucket_split"] == {4: "test_2x"} and out[2]["per_bucket"][4] is None  # a copy, not in place
    rows = bucket_verdict_rows(out, _bench(a=5e-6, b=5e-6, c=5e-6)).set_index("bucket")
    assert list(rows.index) == ["65–128", "129–256"]
    assert rows.loc["65–128", "most accurate"] == "a 0.900 ≈ b 0.900 ≈ c 0.900 (tied)"
    # c beats a on all of the 256-token split's answers (on those past position 128 alone a would win): one
    # seed, so "suggested"
    assert rows.loc["129–256", "most accurate"] == "c 0.900 (suggested, one seed)"
    # the quality vs throughput panels get the same bucket (write.py adds these rows to the buckets table)
    extra = length_split_bucket_rows(out)
    assert sorted(extra["model"]) == ["a", "b", "c"] and set(extra["bucket"]) == {"129-256"}
    assert set(extra["split"]) == {"test_2x"} and extra.set_index("model").loc["a", "value"] == pytest.approx(0.5)


def test_a_bidirectional_task_is_priced_by_bidirectional_cells_only(tmp_path):
    """A classification trains the bidirectional form; the sweep measures the causal one where a backbone has it
    (another width; packed sequences for an RNN): a causal cell must not price a model the task never ran."""
    results = _results(tmp_path)
    for r in results:
        r["receptive_field"] = {"left": 64, "right": 63}  # measured on the trained model: reads both ways
    bench = _bench(a=1e-6, b=5e-6, c=5e-6)
    for b, causal in zip(bench, (True, False, True)):
        b["causal"] = causal
    row = bucket_verdict_rows(results, bench).iloc[0]
    assert row["fastest to train"] == "b 200k tok/s (a: benchmarked causal only)"
    assert row["verdict"] == ("use a or b for quality; no speed comparison: only b has a benchmark cell in the form "
                              "this task trained")
    for r in results:
        r["receptive_field"] = {"left": 127, "right": 0}  # causal runs: a's and c's cells are their form, b's is not
    row = bucket_verdict_rows(results, bench).iloc[0]
    assert row["fastest to train"] == "a 1M tok/s (b: benchmarked bidirectional only)"
    for r, older in zip(results, (None, 31, {"tokens": 31})):
        r["receptive_field"] = older  # not measured, or an older eval.json without sides: every cell is used
    assert bucket_verdict_rows(results, bench).iloc[0]["verdict"] == \
        "use a: tied for most accurate (with b) and fastest to train"
