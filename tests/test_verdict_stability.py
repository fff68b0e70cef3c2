"""The report's benchmark verdicts across two runs of the same code on the same host (#21): a verdict that
differs must be unresolved in at least one run (pipeline/report/stability.py, docs/verdict-stability.md).

The two runs are the committed results/bench of d4e1f7e and 39a9604 for the five models whose code did not
change in between (tests/data/bench_runs/, gzipped JSON as the benchmark stage wrote it)."""
import gzip
import types
from pathlib import Path

import pytest

from pipeline.measure import scaling
from pipeline.report import stability, verdict

RUNS = Path(__file__).parent / "data" / "bench_runs"
MODELS = ("lstm", "tcn", "transformer", "s4d", "linear-transformer")


@pytest.fixture
def run_dirs(tmp_path) -> list[Path]:
    out = []
    for run in ("d4e1f7e", "39a9604"):
        folder = tmp_path / run
        folder.mkdir()
        for model in MODELS:
            (folder / f"{model}.json").write_bytes(gzip.decompress((RUNS / run / f"{model}.json.gz").read_bytes()))
        out.append(folder)
    return out


def load(folder: Path, decode_from: int | None = None) -> list[dict]:
    bench, missing = verdict.load_bench(folder)
    assert not missing and len(bench) == len(MODELS)
    if decode_from:  # the fits the benchmark stage now writes: decode from its own start (bench.decode_fit_min_len)
        from pipeline.measure.sweep import fit_all

        for r in bench:
            r["fits"] = fit_all(r["cells"], r["decode"], types.SimpleNamespace(**r["claim"]), 1024, decode_from)
    return bench


def compare_and_check(first: list[dict], second: list[dict]) -> dict:
    """stability.compare, with its promise checked from the verdicts themselves: every verdict that
    differs is unresolved in at least one run, or is a named crossover whose ranges overlap."""
    a, b = stability.verdicts(first), stability.verdicts(second)
    result = stability.compare(first, second)
    for key, text_a, text_b in result["differ"]:
        if a[key]["firm"] and b[key]["firm"]:
            (lo_a, hi_a), (lo_b, hi_b) = a[key]["range"], b[key]["range"]
            assert lo_a < hi_b and lo_b < hi_a, f"{key}: {text_a} | {text_b}"
    assert result["flips"] == []
    return result


def test_every_verdict_that_differs_between_two_runs_is_unresolved_in_one(run_dirs):
    first, second = (load(d) for d in run_dirs)
    result = compare_and_check(first, second)
    # claims, FLOP-count verdicts, crossovers against the Transformer and per-length cost winners
    assert result["count"] == 84
    assert len(result["differ"]) >= 30  # the runs do differ: the host ran 119-151 GFLOP/s in one, 160-178 in the other
    texts = {key: (a, b) for key, a, b in result["differ"]}
    # e.g. the claim that read "holds" in one run is "inconclusive" in the other, never "does not hold"
    a, b = texts[("tcn", "train_time claim")]
    assert {a.split(" (")[0], b.split(" (")[0]} == {"inconclusive", "holds"}


def test_decode_fits_from_256_are_stable_too(run_dirs):
    first, second = (load(d, decode_from=256) for d in run_dirs)
    result = compare_and_check(first, second)
    claims = {key[0]: (a, b) for key, a, b in result["differ"] if key[1] == "decode_latency claim"}
    assert set(claims) <= set(MODELS)
    for model in ("lstm", "s4d", "linear-transformer"):  # fixed state: holds in one run, inconclusive in the other
        assert sorted(v.split(" (")[0] for v in claims[model]) == ["holds", "inconclusive"]


def test_the_old_rule_flips_on_the_same_two_runs(run_dirs, monkeypatch):
    """Single timings compared as exact numbers (no run-to-run spread): crossovers and cost winners that
    the report would have printed as firm change between the two runs. The check catches them."""
    monkeypatch.setattr(scaling, "TIMING_SD", 0.0)
    first, second = (load(d) for d in run_dirs)
    flips = stability.compare(first, second)["flips"]
    keys = {key for key, _, _ in flips}
    assert ("tcn", "crossover: train faster") in keys  # 'from n = 1024' in one run, 'from n = 256' in the other
    assert len(flips) >= 5


def test_named_crossovers_that_overlap_are_not_a_flip():
    lengths = [128, 256, 512, 1024]
    inside = stability._crossover_range({"kind": "from", "length": 512}, lengths)
    around = stability._crossover_range({"kind": "between", "length": 256, "upper": 1024}, lengths)
    assert inside == (256, 512) and around == (256, 1024)
    assert stability._crossover_range({"kind": "never", "length": None}, lengths)[0] == 1024
    assert stability._crossover_range({"kind": "unresolved", "length": 512}, lengths) is None


def test_the_command_compares_two_folders(run_dirs, capsys):
    from pipeline.cli import main

    assert main(["stability", *map(str, run_dirs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("84 verdicts on 5 models") and "0 of them firm in both runs" in out
    assert main(["stability", str(run_dirs[0])]) == 2
    assert "give two folders" in capsys.readouterr().err
