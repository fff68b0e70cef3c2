"""Exponent fits, claim verdicts, crossovers and cap predictions (pipeline/measure/scaling.py)."""
import math
import random

import numpy as np
import pytest

from pipeline.measure import scaling

LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192]


@pytest.mark.parametrize("exponent", [0.0, 1.0, 1.5, 2.0])
def test_fit_recovers_a_known_exponent_exactly(exponent):
    fit = scaling.fit_exponent(LENGTHS, [3e-5 * n ** exponent for n in LENGTHS], min_len=1024)
    assert fit["points"] == 4 and fit["lengths"] == [1024, 8192]
    assert fit["exponent"] == pytest.approx(exponent, abs=1e-9)
    assert fit["hi"] - fit["lo"] == pytest.approx(0, abs=1e-6)  # no noise, no width


def test_interval_covers_the_truth_under_noise_and_narrows_with_more_points():
    rng = np.random.default_rng(0)
    covered, widths = 0, []
    for _ in range(200):
        costs = [2e-6 * n ** 2 * math.exp(rng.normal(0, 0.05)) for n in LENGTHS]
        fit = scaling.fit_exponent(LENGTHS, costs)
        covered += fit["lo"] <= 2.0 <= fit["hi"]
        widths.append(fit["hi"] - fit["lo"])
    assert 0.9 <= covered / 200 <= 1.0  # a 95% interval
    assert np.median(widths) < 0.15


def test_fit_skips_missing_and_needs_two_points():
    assert scaling.fit_exponent([1024, 2048], [None, 1.0]) is None
    two = scaling.fit_exponent([1024, 2048, 4096], [1.0, float("nan"), 4.0])
    assert two["exponent"] == pytest.approx(1.0) and two["lo"] is None  # 0 degrees of freedom: no interval


def test_verdict_against_claims():
    quad = scaling.fit_exponent(LENGTHS, [n ** 1.9 for n in LENGTHS], 1024)
    assert scaling.verdict(quad, 2) == "holds"
    assert scaling.verdict(quad, 1) == "does not hold"
    assert scaling.verdict(None, 1) == "not measurable here"
    assert scaling.verdict(quad, None) == "not measurable here"


def test_a_wide_interval_does_not_confirm_a_claim():
    """The LSTM's measured 1K-8K train times (seconds per sequence at 8192 tokens per cell): slope
    1.34 with a 95% interval of about [1.14, 1.54]; claim 1 is within that interval widened by 0.2,
    but the exponent is 0.34 away from it: not a pass, and not a clear miss either."""
    costs = [0.130 / 8, 0.152 / 4, 0.221 / 2, 0.253]
    fit = scaling.fit_exponent(LENGTHS[-4:], costs, 1024)
    assert fit["exponent"] == pytest.approx(1.34, abs=0.01) and fit["lo"] - 0.2 < 1 < fit["hi"]
    local = scaling.local_exponents(LENGTHS[-4:], costs)
    assert scaling.verdict(fit, 1, local=local).startswith("inconclusive (interval 1.1")
    steady = [n ** 1.34 * (1 + 0.01 * (-1) ** i) for i, n in enumerate(LENGTHS[-4:])]  # clean n^1.34
    assert scaling.verdict(scaling.fit_exponent(LENGTHS[-4:], steady, 1024), 1) == "does not hold"


def test_crossover():
    ref = [1, 2, 4, 8, 16]  # quadratic per token
    assert scaling.crossover([1, 2, 3, 4, 5], [5, 5, 5, 5, 5], ref) == {"length": 4, "kind": "from", "noisy": []}
    assert scaling.crossover([1, 2, 3], [0.5, 1, 2], [1, 2, 4]) == {"length": 1, "kind": "always", "noisy": []}
    assert scaling.crossover([1, 2, 3], [2, 3, 5], [1, 2, 4])["kind"] == "never"
    # cheaper in the middle only: no crossover, since it is not cheaper at every longer length
    assert scaling.crossover([1, 2, 3], [2, 1, 5], [1, 2, 4])["kind"] == "never"
    assert scaling.crossover([1, 2], [None, None], [1, 2])["kind"] == "not measurable"


def test_a_crossover_is_named_only_where_the_ratio_is_resolved_on_both_sides():
    lengths = [128, 256, 512, 1024, 2048]
    ref = [1.0, 1.0, 1.0, 1.0, 1.0]
    sd = [scaling.TIMING_SD] * 5  # a ratio within exp(±1.96·√2·0.15) ≈ 0.66..1.52 of 1 is noise
    # dearer (2x), noise (1.2x, 0.8x), cheaper (0.5x) from 2048: bracketed, not a length
    between = scaling.crossover(lengths, [2, 2, 1.2, 0.8, 0.5], ref, sd, sd)
    assert between == {"length": 256, "upper": 2048, "kind": "between", "noisy": [512, 1024]}
    # resolved on both sides at adjacent lengths: named
    assert scaling.crossover(lengths, [2, 2, 2, 0.5, 0.5], ref, sd, sd)["kind"] == "from"
    # the ratios of 0.994 / 0.955 from single timings that the old rule turned into crossovers (#21)
    noisy = scaling.crossover(lengths, [1.1, 1.05, 0.994, 0.955, 0.5], ref, sd, sd)
    assert noisy == {"length": 2048, "kind": "unresolved", "noisy": [128, 256, 512, 1024]}
    assert scaling.crossover(lengths, [1.1, 1.05, 0.994, 0.955, 0.5], ref)["kind"] == "from"  # exact values
    # cheaper at the longest but within noise: no crossover either
    assert scaling.crossover(lengths, [2, 2, 2, 2, 0.9], ref, sd, sd)["kind"] == "unresolved"
    assert scaling.crossover(lengths, [2, 2, 2, 2, 2], ref, sd, sd)["kind"] == "never"
    assert scaling.crossover(lengths, [0.5] * 5, ref, sd, sd)["kind"] == "always"


def test_log_sd_joins_a_cells_spread_with_the_run_to_run_floor():
    assert scaling.log_sd(1.0) == scaling.TIMING_SD  # one run: the floor alone
    # 4 runs with an IQR of 20% of the median: 1.2533 · 0.2 / 1.349 / 2 = 0.093 within, √(0.093² + 0.15²)
    assert scaling.log_sd(1.0, 0.2, 4) == pytest.approx(math.hypot(0.0929, 0.15), abs=1e-3)
    ratio, lo, hi = scaling.ratio_interval(2.0, 1.0, 0.1, 0.1)
    assert ratio == 2 and lo == pytest.approx(2 * math.exp(-1.96 * 0.1 * math.sqrt(2)))
    assert hi == pytest.approx(4 / lo)


def test_predict_extrapolates_the_last_two_points():
    assert scaling.predict([1024, 2048], [10.0, 40.0], 4096) == pytest.approx(160.0)
    assert scaling.predict([1024], [10.0], 2048) is None
    assert scaling.predict([1024, 2048], [10.0, 5.0], 4096) == pytest.approx(5.0)  # never predicts a fall


def test_a_plus_b_n_squared_is_approaching_two():
    """Linear terms dominate a Transformer's cost until n >> d: the local slope rises toward 2."""
    costs = [1e-3 * n + 1e-7 * n ** 2 for n in LENGTHS]
    local = scaling.local_exponents(LENGTHS, costs)
    assert [round(e["exponent"], 2) for e in local] == sorted(round(e["exponent"], 2) for e in local)
    fit = scaling.fit_exponent(LENGTHS, costs, 1024)
    assert 1.1 < fit["exponent"] < 1.4
    assert scaling.verdict(fit, 2, local=local).startswith("approaching (local ")
    assert scaling.verdict(fit, 0, local=local) == "does not hold"  # it moves away from 0


def test_a_verdict_is_never_stronger_than_its_interval():
    """Fixture fits from the review of 07c8229: a point estimate on the claim with a wide interval is no verdict."""
    def fit(exponent, lo, hi):
        return {"exponent": exponent, "lo": lo, "hi": hi, "points": 4}

    assert scaling.verdict(fit(1.0, 0.95, 1.05), 1) == "holds"
    assert scaling.verdict(fit(-0.01, -4.63, 4.60), 0).startswith("inconclusive (interval -4.63–4.60")  # S4D decode
    assert scaling.verdict(fit(-0.15, -1.54, 1.25), 0).startswith("inconclusive")  # LSTM decode
    assert scaling.verdict(fit(1.17, 0.65, 1.69), 1).startswith("inconclusive")  # Kim CNN train
    assert scaling.verdict(fit(1.98, 1.95, 2.01), 1) == "does not hold"


def test_few_points_or_the_alternative_inside_the_interval_decide_nothing():
    three = scaling.fit_exponent([2048, 4096, 8192], [1.0, 1.01, 0.99])  # a decode fit on 3 contexts
    assert three["points"] == 3 and scaling.verdict(three, 0) == "inconclusive (3 points)"
    two = scaling.fit_exponent([4096, 8192], [1.0, 1.0])  # no interval at all: never "holds"
    assert scaling.verdict(two, 0, min_points=2) == "inconclusive (2 points)"
    wide = {"exponent": 0.1, "lo": -0.9, "hi": 1.1, "points": 5}
    # inside a generous band, but it does not rule out a KV cache's 1 per token
    assert scaling.verdict(wide, 0, tolerance=1.2).startswith("inconclusive")
    assert scaling.verdict({**wide, "hi": 0.9}, 0, tolerance=1.2) == "holds"


def test_a_transformer_below_12d_is_judged_against_its_flop_count():
    """Per sequence a causal layer of width d costs ~24·n·d² + 2·n²·d FLOPs: at d = 144 attention overtakes
    the rest near n = 1.7K, so over 1K-8K the FLOP count predicts a slope of about 1.6, not 2."""
    d, lengths = 144, [1024, 2048, 4096, 8192]
    per_token = [24 * d * d + 2 * n * d for n in lengths]
    predicted = scaling.flop_exponent(lengths, per_token, 1024, 8192)
    assert predicted["exponent"] == pytest.approx(1.60, abs=0.02)
    assert predicted["local"][0] < 1.5 and predicted["local"][1] > 1.7  # 1K->2K and 4K->8K
    measured = {"exponent": 1.61, "lo": 1.50, "hi": 1.72, "points": 4}
    assert scaling.cost_model_verdict(measured, predicted).startswith("matches its FLOP count's 1.6")
    assert scaling.verdict(measured, 2) == "does not hold"  # against n² it fails; the FLOP count explains why
    wide = {**measured, "lo": 0.86, "hi": 2.32}
    assert scaling.cost_model_verdict(wide, predicted).startswith("consistent with its FLOP count's 1.6")
    assert scaling.cost_model_verdict({**measured, "lo": 1.9, "hi": 2.1}, predicted).startswith("differs from")
    # excludes 1.60 but by less than the tolerance: neither matches nor differs (a verdict that flipped
    # between two runs when 'differs' only asked for the prediction outside the interval)
    near = scaling.cost_model_verdict({**measured, "lo": 1.67, "hi": 1.78}, predicted)
    assert scaling.cost_model_verdict({**measured, "lo": 1.65, "hi": 1.95}, predicted).startswith("inconclusive against")
    assert near.startswith("matches")
    assert scaling.cost_model_verdict({**measured, "points": 3}, predicted).startswith("inconclusive (3 points)")
    assert scaling.cost_model_verdict(measured, None) == "—"


def test_rounds_cancel_a_drift_that_a_single_pass_reads_as_growth():
    """A fixed-state decoder (true exponent 0) on a host that slows down 60% over the run: timed in one pass
    the late (long) contexts come out slow; timed in interleaved rounds each round shares the drift."""
    contexts = [256, 512, 1024, 2048, 4096]
    rng = random.Random(1)
    one_pass = [1.0 * (1 + 0.6 * i / 4) for i in range(5)]  # context i timed at time i
    fit = scaling.fit_exponent(contexts, one_pass, 256)
    assert fit["exponent"] > 0.15  # the drift, read as growth with n
    # 5 rounds, each round later and slower than the one before, each context with 2% noise
    rounds = [[1.0 * (1 + 0.15 * r) * (1 + rng.gauss(0, 0.02)) for r in range(5)] for _ in contexts]
    fit = scaling.fit_exponent_over_rounds(contexts, rounds, 256)
    assert fit["rounds"] == 5 and len(fit["slopes"]) == 5 and fit["points"] == 5
    assert fit["lo"] < 0 < fit["hi"] and fit["hi"] - fit["lo"] < 0.1
    assert scaling.verdict(fit, 0) == "holds"
    # the mean of the rounds' slopes is the slope of their mean log cost (least squares is linear)
    assert fit["exponent"] == pytest.approx(sum(fit["slopes"]) / 5)
    wide = scaling.fit_exponent_over_rounds(contexts, rounds, 256, between_sd=scaling.DECODE_SLOPE_SD)
    assert wide["exponent"] == fit["exponent"] and wide["hi"] - wide["lo"] > 2 * scaling.Z95 * scaling.DECODE_SLOPE_SD


def test_rounds_recover_a_kv_cache_slope_and_its_spread():
    contexts = [256, 512, 1024, 2048, 4096]
    rng = random.Random(2)
    rounds = [[0.5 * n ** 1.0 * math.exp(rng.gauss(0, 0.05)) for _ in range(7)] for n in contexts]
    fit = scaling.fit_exponent_over_rounds(contexts, rounds)
    assert fit["lo"] < 1.0 < fit["hi"] and scaling.verdict(fit, 1) == "holds"
    # one round: the residual interval of the one curve; a context below min_len is left out
    one = scaling.fit_exponent_over_rounds(contexts, [r[:1] for r in rounds], 512)
    assert one["points"] == 4 and "rounds" not in one
    assert scaling.fit_exponent_over_rounds(contexts[:2], [[1.0], [1.0]], 512) is None


def test_a_time_fit_carries_the_between_process_sd():
    """Four cells on a perfect n^1.25 line: one process's residuals say ±0, but the slope moves ~0.065 between
    runs (an LSTM's 1.21-1.28 'does not hold' in one run, 1.15-1.21 in the next), so the interval must too."""
    costs = [n ** 1.25 for n in LENGTHS[-4:]]
    tight = scaling.fit_exponent(LENGTHS[-4:], costs, 1024)
    assert tight["hi"] - tight["lo"] < 1e-9 and scaling.verdict(tight, 1) == "does not hold"
    wide = scaling.fit_exponent(LENGTHS[-4:], costs, 1024, between_sd=scaling.TIME_SLOPE_SD)
    assert wide["exponent"] == pytest.approx(1.25)
    assert wide["hi"] - wide["lo"] == pytest.approx(2 * scaling.Z95 * scaling.TIME_SLOPE_SD)
    assert scaling.verdict(wide, 1).startswith("inconclusive")
