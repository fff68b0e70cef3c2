"""The training-throughput benchmark runs end to end and writes a well-formed report (no timing claims)."""
import json

from bench import train_throughput


def test_train_throughput_writes_json_and_table(tmp_path):
    out = tmp_path / "tt.json"
    models, lengths, budget, tokens = ["tcn", "transformer", "kim-cnn"], [32, 64], 50_000, 256
    train_throughput.main(["--models", *models, "--lengths", *map(str, lengths), "--budget", str(budget),
                           "--tokens-per-step", str(tokens), "--repeats", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["budget_params"] == budget and report["lengths"] == lengths
    assert {"torch", "device", "threads", "cpu"} <= set(report["env"])
    assert list(report["skipped_models"]) == ["kim-cnn"]  # bidirectional only
    assert list(report["models"]) == ["tcn", "transformer"]
    for name, row in report["models"].items():
        assert row["d_model"] > 0 and row["params"] > 0
        assert [c["length"] for c in row["cells"]] == lengths
        for cell in row["cells"]:
            assert cell["batch"] == tokens // cell["length"]
            assert cell["reason"] is None, f"{name} n={cell['length']}: {cell['reason']}"
            assert cell["tokens_per_s"] > 0 and cell["step_s"] > 0
    table = out.with_suffix(".md").read_text()
    assert all(f"| {name} |" in table for name in report["models"]) and "kim-cnn" in table


def test_a_step_over_the_time_cap_is_null_with_a_reason_and_longer_lengths_are_skipped(tmp_path):
    out = tmp_path / "tt.json"
    train_throughput.main(["--models", "tcn", "--lengths", "32", "64", "--budget", "50000", "--tokens-per-step", "64",
                           "--max-step-seconds", "0", "--out", str(out)])
    first, second = json.loads(out.read_text())["models"]["tcn"]["cells"]
    assert first["tokens_per_s"] is None and "--max-step-seconds" in first["reason"]
    assert second["tokens_per_s"] is None and "skipped" in second["reason"]


def test_repro_budget_judges_a_run_by_its_own_profiles_budget():
    """A cpu-full run of 105 min at a peak of 172 GFLOP/s is within cpu-full's 120 minutes (at 190 GFLOP/s), though
    far over the cpu profile's 15; a profile without a budget says so instead of borrowing one."""
    from bench import repro_budget

    def record(profile, minutes):
        budget = repro_budget.budget_of(profile)
        return {"host": {"cores": 2, "fp32_peak_gflops": 172.0}, "label": profile, "date": "2026-12-04 13:00",
                "exit_code": 0, "stages": [{"stage": "train@lstm-ptb", "seconds": minutes * 60}], "skipped": [],
                "total_s": minutes * 60, "minutes": minutes, "minute_gflops": minutes * 172.0, "profile": profile,
                "budget_minute_gflops": budget, "allowed_minutes": None if budget is None else budget / 172.0}

    assert repro_budget.budget_of("cpu") == 15 * 190 and repro_budget.budget_of("cpu-full") == 120 * 190
    assert "the cpu-full profile's budget 22800 min·GFLOP/s (120 min" in repro_budget.table(record("cpu-full", 105.0))
    assert "within budget" in repro_budget.table(record("cpu-full", 105.0))
    assert "OVER budget" in repro_budget.table(record("cpu", 20.0))
    assert "the smoke profile has no time budget here" in repro_budget.table(record("smoke", 1.0))


def test_decode_stability_fits_one_process_both_ways_and_compares_processes():
    """bench.decode_stability: one (in-process, smoke-sized) decode measurement fitted as the old one pass
    and as the benchmark's rounds; the benchmark's interval adds the between-process sd to the rounds' own."""
    from bench import decode_stability
    from pipeline.measure import scaling

    one = decode_stability.one_process("lstm", "smoke")
    assert [c["context"] for c in one["cells"]] == [32, 64, 128] and one["claimed"] == 0
    assert all(len(c["rounds_ms"]) == 5 for c in one["cells"])
    assert one["rounds"]["fit"]["rounds"] == 5 and one["one_pass"]["fit"]["points"] == 3
    rows = decode_stability.summarise({"lstm": [one, one]}, "smoke")
    assert [r["design"] for r in rows] == ["one_pass", "rounds", "benchmark"]
    assert all(r["pairs"] == 1 and r["pairs_overlapping"] == 1 for r in rows)  # a process overlaps itself
    bench_fit = scaling.fit_exponent_over_rounds([32, 64, 128], [c["rounds_ms"] for c in one["cells"]], 32,
                                                 scaling.DECODE_SLOPE_SD)
    assert bench_fit["hi"] - bench_fit["lo"] >= 2 * scaling.Z95 * scaling.DECODE_SLOPE_SD
    assert rows[2]["fits"][0] == f"{bench_fit['exponent']:+.2f} [{bench_fit['lo']:+.2f}, {bench_fit['hi']:+.2f}]"
