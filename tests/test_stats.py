"""pipeline.stats: bootstrap, paired bootstrap, seed t-intervals and sacreBLEU's intervals, checked
against answers known in closed form (binomial standard error, Student t, sqrt(cluster size))."""
import math
import os
import time

import numpy as np
import pytest

from pipeline import stats


def half_width(res):
    return (res["hi"] - res["lo"]) / 2


# --- bootstrap_interval ------------------------------------------------------------------------------

def test_bernoulli_interval_matches_binomial_standard_error():
    x = (np.random.default_rng(7).random(1000) < 0.7).astype(float)
    res = stats.bootstrap_interval(x)
    assert res["lo"] < 0.7 < res["hi"]
    assert res["lo"] < res["value"] < res["hi"]
    binomial = 1.96 * math.sqrt(0.7 * 0.3 / 1000)  # 0.0284
    assert half_width(res) == pytest.approx(binomial, abs=0.005)
    assert res["n"] == 1000 and res["n_boot"] == 1000 and res["level"] == 0.95
    assert res["method"] == "bootstrap (percentile, examples)"


def test_same_seed_same_interval_other_seed_other_interval():
    x = np.random.default_rng(1).random(500)
    assert stats.bootstrap_interval(x, seed=3) == stats.bootstrap_interval(x, seed=3)
    assert stats.bootstrap_interval(x, seed=3)["lo"] != stats.bootstrap_interval(x, seed=4)["lo"]


def test_grouped_interval_is_sqrt_cluster_size_wider_for_perfectly_correlated_groups():
    draws = (np.random.default_rng(11).random(400) < 0.6).astype(float)
    x = np.repeat(draws, 10)  # each group: 10 copies of one draw -> 400 independent pieces, not 4000
    groups = np.repeat(np.arange(400), 10)
    naive = stats.bootstrap_interval(x)
    grouped = stats.bootstrap_interval(x, groups=groups)
    assert grouped["value"] == pytest.approx(naive["value"])
    assert half_width(grouped) / half_width(naive) == pytest.approx(math.sqrt(10), rel=0.15)
    assert grouped["method"] == "bootstrap (percentile, groups)" and grouped["n_units"] == 400


def test_groups_equal_weighted_per_sequence_means():
    """Resampling token groups is resampling sequences weighted by length: same units, same draws."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(5, 40, size=200)
    seq = np.repeat(np.arange(200), lengths)
    nll = rng.gamma(2.0, 1.5, size=seq.size)
    per_token = stats.bootstrap_interval(nll, groups=seq, transform=np.exp)
    seq_mean = np.bincount(seq, weights=nll) / lengths
    per_seq = stats.bootstrap_interval(seq_mean, weights=lengths, transform=np.exp)
    assert per_token["value"] == pytest.approx(math.exp(nll.mean()))
    for key in ("value", "lo", "hi"):
        assert per_token[key] == pytest.approx(per_seq[key], rel=1e-9)


def test_perplexity_interval_brackets_exp_mean_and_is_asymmetric():
    nll = np.random.default_rng(3).gamma(2.0, 1.5, size=500)  # mean 3, sd 2.1
    ppl = stats.bootstrap_interval(nll, transform=np.exp)
    raw = stats.bootstrap_interval(nll)
    assert ppl["value"] == pytest.approx(math.exp(nll.mean()))
    assert ppl["lo"] < ppl["value"] < ppl["hi"]
    assert (ppl["hi"] - ppl["value"]) > 1.1 * (ppl["value"] - ppl["lo"])  # exp stretches the top
    # percentiles follow a monotone transform: the same draws give exp of the NLL interval
    assert ppl["lo"] == pytest.approx(math.exp(raw["lo"]), rel=1e-3)
    assert ppl["hi"] == pytest.approx(math.exp(raw["hi"]), rel=1e-3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        stats.bootstrap_interval([])
    with pytest.raises(ValueError):
        stats.bootstrap_interval([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.bootstrap_interval([1.0, 2.0], weights=[1.0])
    with pytest.raises(ValueError):
        stats.bootstrap_interval([1.0, 2.0], statistic="median")
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1.0, 2.0], [1.0])


def test_grouped_bootstrap_of_80k_tokens_is_fast():
    rng = np.random.default_rng(0)
    seq = np.sort(rng.integers(0, 3700, size=80_000))
    nll = rng.gamma(2.0, 2.0, size=80_000)
    start = time.perf_counter()
    stats.bootstrap_interval(nll, groups=seq, transform=np.exp, n_boot=1000)
    assert time.perf_counter() - start < 3.0  # ~0.06 s measured; the bound only catches a Python loop


# --- paired_bootstrap --------------------------------------------------------------------------------

def planted_pair(n=2000, seed=0):
    """B right on ~70%; A right wherever B is, plus on 5% of all examples (100) where B is wrong."""
    rng = np.random.default_rng(seed)
    b = (rng.random(n) < 0.7).astype(float)
    a = b.copy()
    a[rng.choice(np.flatnonzero(b == 0), size=n // 20, replace=False)] = 1.0
    return a, b


def test_paired_bootstrap_detects_planted_five_point_gain():
    a, b = planted_pair()
    res = stats.paired_bootstrap(a, b)
    assert res["diff"] == pytest.approx(0.05)
    assert res["verdict"] == "A better" and 0 < res["lo"] < 0.05 < res["hi"]
    assert res["p_a_better"] == 1.0
    assert stats.paired_bootstrap(b, a)["verdict"] == "B better"


def test_paired_bootstrap_lower_is_better():
    a, b = planted_pair()
    error_a, error_b = 1 - a, 1 - b  # A has the lower error rate
    assert stats.paired_bootstrap(error_a, error_b, higher_is_better=False)["verdict"] == "A better"
    assert stats.paired_bootstrap(error_a, error_b, higher_is_better=True)["verdict"] == "B better"


def test_identical_systems_are_tied():
    a, _ = planted_pair()
    res = stats.paired_bootstrap(a, a.copy())
    assert res["verdict"] == "tied" and res["diff"] == 0 and res["lo"] == res["hi"] == 0
    assert res["p_a_better"] == 0.0


def test_independent_systems_with_equal_accuracy_are_tied():
    rng = np.random.default_rng(21)
    a = (rng.random(2000) < 0.7).astype(float)
    b = (rng.random(2000) < 0.7).astype(float)
    assert stats.paired_bootstrap(a, b)["verdict"] == "tied"


def test_paired_bootstrap_false_positive_rate_is_near_five_percent():
    """Calibration: over 60 pairs of equally good independent systems, ~5% are called different."""
    rng = np.random.default_rng(99)
    wrong = 0
    for seed in range(60):
        a = (rng.random(500) < 0.7).astype(float)
        b = (rng.random(500) < 0.7).astype(float)
        wrong += stats.paired_bootstrap(a, b, n_boot=400, seed=seed)["verdict"] != "tied"
    assert wrong <= 9  # 3 expected; P(>= 10 | binomial(60, 0.05)) < 0.3%


def test_paired_grouped_perplexity():
    rng = np.random.default_rng(4)
    seq = np.repeat(np.arange(300), 20)
    nll_b = rng.gamma(2.0, 1.5, size=seq.size)
    nll_a = nll_b - 0.2  # A: lower NLL on every token
    res = stats.paired_bootstrap(nll_a, nll_b, groups=seq, higher_is_better=False, transform=np.exp)
    assert res["value_a"] == pytest.approx(math.exp(nll_a.mean()))
    assert res["diff"] < 0 and res["hi"] < 0 and res["verdict"] == "A better"
    assert res["method"] == "paired bootstrap (percentile, groups)"


def seeds_of(rng, accuracies, n=1000):
    """[seeds, n] 0/1 outcomes, one row per training seed with its own accuracy."""
    return np.stack([(rng.random(n) < p).astype(float) for p in accuracies])


def test_one_lucky_seed_is_not_significant_when_seeds_are_resampled():
    """A: seeds at 0.95 / 0.20 / 0.20 (one seed made the transition), B: 0.25 every seed. Pooled over
    examples, A's mean 0.45 beats B's 0.25 by far; with the seeds redrawn, A's value swings between
    0.20 and 0.95, so the paired bootstrap must call it tied."""
    rng = np.random.default_rng(5)
    a, b = seeds_of(rng, [0.95, 0.20, 0.20]), seeds_of(rng, [0.25, 0.25, 0.25])
    pooled = stats.paired_bootstrap(a.mean(axis=0), b.mean(axis=0))
    assert pooled["verdict"] == "A better"
    res = stats.paired_bootstrap(a, b)
    assert res["verdict"] == "tied" and res["lo"] < 0 < res["hi"] and res["seeds"] == (3, 3)
    assert res["value_a"] == pytest.approx(a.mean()) and "seeds, 3 vs 3" in res["method"]


def test_consistent_gain_over_seeds_stays_significant():
    rng = np.random.default_rng(6)
    a, b = seeds_of(rng, [0.80, 0.82, 0.81]), seeds_of(rng, [0.70, 0.71, 0.69])
    res = stats.paired_bootstrap(a, b)
    # the seed stage (Welch t, df about 4) widens it beyond the test-sampling interval
    assert res["verdict"] == "A better" and 0.02 < res["lo"] < res["diff"] < res["hi"] < 0.18


def test_one_seed_rows_match_the_plain_paired_bootstrap():
    a, b = planted_pair()
    assert stats.paired_bootstrap(a[None, :], b[None, :]) == stats.paired_bootstrap(a, b)


def test_seeded_systems_must_share_examples():
    with pytest.raises(ValueError, match="different examples"):
        stats.paired_bootstrap(np.ones((2, 10)), np.ones((2, 11)))


# --- seed_interval -----------------------------------------------------------------------------------

def test_seed_interval_known_t_interval():
    res = stats.seed_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert res["value"] == 2.0 and res["sd"] == pytest.approx(1.0)
    assert res["lo"] == pytest.approx(2.0 - half) and res["hi"] == pytest.approx(2.0 + half)


def test_seed_interval_one_seed_has_none():
    res = stats.seed_interval([0.83])
    assert res["value"] == 0.83 and res["lo"] is None and res["hi"] is None
    assert "one seed" in res["method"]


def test_seed_interval_large_sample_uses_normal_quantile():
    x = np.arange(40.0)
    res = stats.seed_interval(x)
    assert half_width(res) == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(40))


def t_cdf(t, df):
    """Student t CDF by numerical integration of its density (no scipy)."""
    grid = np.linspace(0.0, t, 200_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(grid ** 2 / df))
    return 0.5 + float(np.sum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid)))


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 20, 30])
def test_t_table_is_the_975_quantile(df):
    assert t_cdf(stats._T975[df - 1], df) == pytest.approx(0.975, abs=2e-5)


# --- sacreBLEU ---------------------------------------------------------------------------------------

HYPS = [
    "Der Hund läuft schnell über die Straße.",
    "Ich habe heute keine Zeit für das Treffen.",
    "Die Katze schläft auf dem warmen Sofa.",
    "Wir fahren morgen mit dem Zug nach Berlin.",
    "Das Wetter ist heute sehr schön und sonnig.",
    "Er liest jeden Abend ein Buch im Bett.",
    "Die Kinder spielen im Garten mit dem Ball.",
    "Sie kauft frisches Brot beim Bäcker um die Ecke.",
    "Der Zug hat leider zwanzig Minuten Verspätung.",
    "Meine Schwester arbeitet in einem großen Krankenhaus.",
]
REFS = [
    "Der Hund rennt schnell über die Straße.",
    "Ich habe heute keine Zeit für die Besprechung.",
    "Die Katze schläft auf dem warmen Sofa.",
    "Morgen fahren wir mit dem Zug nach Berlin.",
    "Heute ist das Wetter sehr schön und sonnig.",
    "Jeden Abend liest er im Bett ein Buch.",
    "Die Kinder spielen mit dem Ball im Garten.",
    "Sie kauft beim Bäcker um die Ecke frisches Brot.",
    "Der Zug hat leider zwanzig Minuten Verspätung.",
    "Meine Schwester arbeitet in einer großen Klinik.",
]


def test_bleu_interval_is_sacrebleus(monkeypatch):
    import sacrebleu
    from sacrebleu.metrics import BLEU

    res = stats.bleu_interval(HYPS, REFS, n_boot=1000, seed=3)
    assert res["value"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert res["lo"] <= res["value"] <= res["hi"] and res["lo"] < res["hi"]
    assert res["method"] == "sacreBLEU bootstrap (n=1000)"
    # the same resamples as sacreBLEU's --confidence: its "mu +- ci" comes out identical
    monkeypatch.setenv("SACREBLEU_SEED", "3")
    theirs = BLEU().corpus_score(HYPS, [REFS], n_bootstrap=1000)
    assert (res["mu"], res["ci"]) == (theirs._mean, theirs._ci)
    assert res["hi"] - res["lo"] == pytest.approx(2 * theirs._ci)


def test_bleu_interval_leaves_sacrebleu_seed_alone(monkeypatch):
    monkeypatch.setenv("SACREBLEU_SEED", "777")
    stats.bleu_interval(HYPS, REFS, n_boot=50, seed=1)
    assert os.environ["SACREBLEU_SEED"] == "777"


def test_chrf_interval_is_sacrebleus():
    import sacrebleu

    res = stats.chrf_interval(HYPS, [REFS], n_boot=500)
    assert res["value"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert res["lo"] <= res["value"] <= res["hi"]
    assert res["method"] == "sacreBLEU bootstrap (n=500)"


# --- calibration with seeds: planted systems, 3 seeds, seed spread in logits --------------------------

def planted_seeds(rng, spread, shift=0.0, k=3, n=300):
    """[k, n] 0/1 outcomes: one test set (example logits N(0.5, 1.5)), each seed moving every example's
    logit by its own N(0, spread) draw; `shift` moves the system's logits."""
    difficulty = rng.normal(0.5, 1.5, n)
    offsets = rng.normal(0.0, spread, (k, 1))
    return (rng.random((k, n)) < 1 / (1 + np.exp(-(difficulty + shift + offsets)))).astype(float), difficulty


def called_different(spread, shift, replicates):
    rng = np.random.default_rng(2)
    hits = 0
    for r in range(replicates):
        a, difficulty = planted_seeds(rng, spread, shift)
        offsets = rng.normal(0.0, spread, (3, 1))  # B: same test set, its own seeds
        b = (rng.random(a.shape) < 1 / (1 + np.exp(-(difficulty + offsets)))).astype(float)
        hits += stats.paired_bootstrap(a, b, n_boot=200, seed=r)["verdict"] != "tied"
    return hits / replicates


@pytest.mark.parametrize("spread", [0.3, 0.6])
def test_identical_systems_with_three_seeds_are_rarely_called_different(spread):
    """Two systems identical in distribution, 3 seeds each: at most 7% false 'better' in 300 replicates
    (2.6% and 3.0% in 1,000; redrawing seeds with replacement gave 7.5% and 14.9%)."""
    assert called_different(spread, 0.0, 300) <= 0.07


def test_a_real_difference_over_three_seeds_is_found():
    """A one-logit gain at a seed spread of 0.3: found in 67% of 1,000 replicates."""
    assert called_different(0.3, 1.0, 200) > 0.5


@pytest.mark.parametrize("k,spread", [(3, 0.3), (3, 0.6), (1, 0.0)])
def test_two_stage_interval_covers_the_value_over_seeds_and_test_sets(k, spread):
    """The estimand: expected accuracy over new seeds and new test sets. Covered in >= 90% of 200
    replicates (95% nominal); one seed without seed spread is the plain bootstrap."""
    rng = np.random.default_rng(3)
    big = rng.normal(0.5, 1.5, 400_000) + rng.normal(0.0, spread, 400_000) if spread else rng.normal(0.5, 1.5, 400_000)
    truth = float(np.mean(1 / (1 + np.exp(-big))))
    covered = 0
    for r in range(200):
        x, _ = planted_seeds(rng, spread, k=k)
        res = stats.bootstrap_interval(x if k > 1 else x[0], n_boot=200, seed=r)
        covered += res["lo"] <= truth <= res["hi"]
        assert res["seed_variation"] == (k > 1)
    assert covered / 200 >= 0.9


def test_interval_over_seeds_adds_the_seed_spread_to_each_seeds_test_interval():
    """BLEU: sacreBLEU's bootstrap per seed (here ±1.0 around each seed) and the spread of 3 seeds."""
    one = stats.interval_over_seeds([20.0], [{"lo": 19.0, "hi": 21.0}])
    assert (one["lo"], one["hi"], one["seed_variation"]) == (19.0, 21.0, False)
    res = stats.interval_over_seeds([19.0, 20.0, 21.0], [{"lo": v - 1.0, "hi": v + 1.0} for v in (19.0, 20.0, 21.0)])
    t_only = stats.seed_interval([19.0, 20.0, 21.0])
    assert res["seed_variation"] and res["value"] == 20.0
    assert res["lo"] < t_only["lo"] < 19.0 and res["hi"] > t_only["hi"] > 21.0  # wider than either part
    assert stats.interval_over_seeds([19.0, 21.0], [{"lo": 18.0, "hi": 20.0}, None])["lo"] is None
