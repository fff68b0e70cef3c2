"""Confidence intervals and significance for the evaluate and report stages (numpy only, no torch).

One test set gives one number per system; these functions say how much that number would move on
another test set of the same kind, and whether two systems' difference is more than that.

    bootstrap_interval   percentile bootstrap interval of a (weighted) mean over test examples,
                         optionally resampling whole groups (e.g. all tokens of one LM sequence)
                         and optionally of a transformed mean (mean NLL -> perplexity); with
                         several seeds two-stage: test examples, then seeds (Student t)
    paired_bootstrap     A vs B on the same examples: the difference, its interval, a verdict
                         (with several seeds per system: Welch t on the seed means on top)
    seed_interval        mean and Student-t interval across training seeds
    bleu_interval        sacreBLEU's own bootstrap interval of corpus BLEU
    chrf_interval        the same for chrF

The bootstrap is Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 6 and 13 (the
percentile interval); the paired form for comparing two systems on one test set is Koehn (2004),
"Statistical Significance Tests for Machine Translation Evaluation", EMNLP.

Resampling a weighted mean only needs, per resampled unit (an example, or a group), the sum of
weight*value and the sum of weight. Groups are first collapsed to those two sums (np.bincount), so a
replicate is a draw of G unit indices and two gathered sums: O(n + n_boot * G) time for n values in
G groups (G = n without groups), with memory bounded by resampling in chunks of replicates.
Measured on one CPU core: 1,000 replicates over 80,000 tokens in 3,700 sequences take ~0.05 s;
over 80,000 ungrouped examples ~0.9 s (drawing 80M random indices dominates).
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Callable, Optional, Sequence

import numpy as np

# Upper bound on the elements of one (replicates x units) index matrix: 4M int64 = 32 MiB.
_CHUNK_ELEMS = 1 << 22

# Student t 0.975 quantiles (two-sided 95%) for 1..30 degrees of freedom; 1.96 (normal) beyond, which
# is at most 2% narrower than the exact value (2.042 at 30 df).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

Transform = Optional[Callable[[np.ndarray], np.ndarray]]


# ---------------------------------------------------------------------------------------------------
# Resampling core
# ---------------------------------------------------------------------------------------------------

def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _units(columns: Sequence[np.ndarray], weights, groups) -> tuple[np.ndarray, np.ndarray, str]:
    """Collapse per-example values into resampling units.

    Returns (sums, totals, kind): sums[k, u] = sum of weight*value of column k over unit u, totals[u]
    = sum of weight over unit u. A unit is one example, or one group when `groups` is given, so that
    correlated examples (the tokens of one sequence) are drawn together: the cluster bootstrap
    (Efron & Tibshirani 1993, sec. 8.4 on dependent data)."""
    n = columns[0].size
    if n == 0:
        raise ValueError("no values to resample")
    for col in columns:
        if col.shape != (n,):
            raise ValueError(f"value arrays differ in length: {col.shape} vs ({n},)")
        if not np.all(np.isfinite(col)):
            raise ValueError("values must be finite")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != (n,):
        raise ValueError(f"weights have shape {w.shape}, values ({n},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    weighted = np.stack([col * w for col in columns])
    if groups is None:
        return weighted, w, "examples"
    g = np.asarray(groups).ravel()
    if g.shape != (n,):
        raise ValueError(f"groups have shape {g.shape}, values ({n},)")
    _, unit = np.unique(g, return_inverse=True)
    n_units = int(unit.max()) + 1
    sums = np.stack([np.bincount(unit, weights=row, minlength=n_units) for row in weighted])
    return sums, np.bincount(unit, weights=w, minlength=n_units), "groups"


def _resampled_means(sums: np.ndarray, totals: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(k, n_boot) weighted means, each replicate drawing len(totals) units with replacement.

    The same draw serves every row of `sums`, which is what makes paired_bootstrap paired. Draws are
    made a chunk of replicates at a time as an integer index matrix; O(n_boot * units) time and
    O(_CHUNK_ELEMS) memory."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n_units = totals.size
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMS // n_units)
    uniform = bool(np.all(totals == totals[0]))  # unweighted examples: every draw weighs the same
    out = np.empty((sums.shape[0], n_boot))
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))
        weight = n_units * totals[0] if uniform else totals[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # a draw of only zero-weight units
            for k, row in enumerate(sums):  # row[idx] per row: faster than sums[:, idx]
                out[k, start:stop] = row[idx].sum(axis=1) / weight
    return out


def _apply(transform: Transform, x):
    return x if transform is None else transform(x)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval (Efron & Tibshirani 1993, sec. 13.3): the (1-level)/2 and (1+level)/2
    quantiles of the bootstrap replicates. It follows monotone transforms, so the interval of
    exp(mean NLL) is the exp of the interval of mean NLL, asymmetric as perplexity is."""
    lo, hi = np.nanquantile(samples, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------

def bootstrap_interval(values, weights=None, groups=None, statistic: str = "mean", n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0, transform: Transform = None) -> dict:
    """Percentile bootstrap interval of transform(weighted mean of `values`) over the test examples,
    and over training seeds when `values` is [seeds, n] (one row per seed, same examples).

    values     per-example metric terms: 0/1 correctness for accuracy, per-token NLL for an LM
    weights    optional per-example weights (default 1); the mean is sum(w*v) / sum(w)
    groups     optional per-example group ids: whole groups are resampled (cluster bootstrap), since
               the tokens of one sequence are correlated and resampling them one by one gives an
               interval that is too narrow
    statistic  only "mean" (the metrics here are all means of per-example terms)
    transform  vectorised function applied to each resampled mean, e.g. np.exp for perplexity, so
               the interval is of the metric that is reported
    Several seeds: the value is the mean over seeds of transform(mean), and the interval is
    two-stage (_seed_stage): test examples resampled, one draw shared by every seed as the test set
    is, then the seed mean's deviation drawn from Student t on the seeds' spread. One seed: the
    interval covers test sampling only ("seed_variation": False).
    Returns {"value", "lo", "hi", "n", "n_units", "seeds", "seed_variation", "n_boot", "level",
    "method", "per_seed"}; n is the number of examples; per_seed is [(value, lo, hi)] per seed: that seed's
    own percentile interval over the test examples, read off the same resamples (with one seed, the
    interval itself). Cost: O(n + seeds * n_boot * units).
    """
    if statistic != "mean":
        raise ValueError(f"only statistic='mean' is supported, got {statistic!r}")
    _check_level(level)
    x = _per_seed(values)
    sums, totals, kind = _units(list(x), weights, groups)
    points = _apply(transform, sums.sum(axis=1) / totals.sum())
    rows = _apply(transform, _resampled_means(sums, totals, n_boot, seed))
    boot = rows.mean(axis=0)
    k = len(x)
    if k > 1:
        boot = boot + _seed_stage(points.var(ddof=1) / k, k - 1, n_boot, seed)
    lo, hi = _percentiles(boot, level)
    method = f"bootstrap (percentile, {kind})" if k == 1 else \
        f"two-stage bootstrap (percentile; {kind} resampled, then {k} seeds: Student t on their spread)"
    per_seed = [(float(p), *_percentiles(row, level)) for p, row in zip(points, rows)]
    return {"value": float(points.mean()), "lo": lo, "hi": hi, "n": int(x.shape[1]), "n_units": int(totals.size),
            "seeds": k, "seed_variation": k > 1, "n_boot": int(n_boot), "level": float(level), "method": method,
            "per_seed": per_seed}


def _per_seed(values) -> np.ndarray:
    """[seeds, n] float array from one run's terms ([n]) or several seeds' terms ([seeds, n])."""
    x = np.asarray(values, dtype=float)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"values must be [n] or [seeds, n] with n > 0, got shape {x.shape}")
    return x.reshape(1, -1) if x.ndim == 1 else x


def _seed_stage(var_of_mean: float, df: float, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot] draws of the seed mean's deviation: sqrt(var_of_mean) * Student t(df).

    The seed stage of a two-stage bootstrap (Davison & Hinkley 1997, sec. 3.8), drawn from the t
    distribution rather than by resampling seeds: 3 seeds redrawn with replacement give only 10
    distinct means and a spread (k-1)/k of the true one, which called identical systems different
    in 6-14% of simulated cases at 5%. The t draw is the interval over seeds a Student/Welch test
    uses; the test-sampling part is added on top, so with a large seed spread the interval is the
    t-interval over seeds and with a tiny one the bootstrap over examples."""
    if not var_of_mean > 0:
        return np.zeros(n_boot)
    return math.sqrt(var_of_mean) * np.random.default_rng([seed, 2]).standard_t(df, n_boot)


def interval_over_seeds(values: Sequence[float], intervals: Sequence[Optional[dict]], n_boot: int = 1000,
                        level: float = 0.95, seed: int = 0) -> dict:
    """bootstrap_interval's two-stage estimand for a corpus metric (BLEU, chrF) whose test-set bootstrap
    sacreBLEU ran on each seed apart: the test-sampling part is normal with the seeds' mean standard
    error (half-width / 1.96: one test set serves every seed, so the errors do not average out), the
    seed part Student t on the seeds' spread. One seed: that seed's interval as it is."""
    x = np.asarray(values, dtype=float).ravel()
    found = [iv for iv in intervals if iv and iv.get("lo") is not None and iv.get("hi") is not None]
    if x.size == 1 or len(found) != x.size:
        iv = found[0] if x.size == 1 and found else {}
        return {"value": float(x.mean()), "lo": iv.get("lo"), "hi": iv.get("hi"), "seeds": int(x.size),
                "seed_variation": False, "method": "bootstrap over test examples (one seed)"}
    se = float(np.mean([(iv["hi"] - iv["lo"]) / 3.92 for iv in found]))
    draws = x.mean() + se * np.random.default_rng([seed, 3]).standard_normal(n_boot)
    lo, hi = _percentiles(draws + _seed_stage(x.var(ddof=1) / x.size, x.size - 1, n_boot, seed), level)
    return {"value": float(x.mean()), "lo": lo, "hi": hi, "seeds": int(x.size), "seed_variation": True,
            "method": f"two-stage (sacreBLEU bootstrap over test sentences, then {x.size} seeds: Student t)"}


def welch_df(var_a: float, var_b: float, k_a: int, k_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a difference of two seed means, var_x the variance of
    each mean (sd^2 / k); infinite when neither varies (the t draw is then zero anyway)."""
    den = var_a ** 2 / (k_a - 1) + var_b ** 2 / (k_b - 1)
    return math.inf if den <= 0 else (var_a + var_b) ** 2 / den


def paired_bootstrap(values_a, values_b, weights=None, groups=None, higher_is_better: bool = True,
                     transform: Transform = None, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict:
    """System A vs system B on the same test examples (Koehn 2004), and over seeds when they have them.

    Each replicate draws one resample of examples (or of groups) and scores both systems on it, so
    the difference's variation excludes example difficulty, which both systems share. `values_a` and
    `values_b` are per-example terms aligned to the same examples; weights and groups are shared.
    Either may be [seeds, n], one row per training seed: a system's value is then the mean over its
    seeds of transform(mean). With at least two seeds each, the seed stage is Welch's t on the seed
    means (Welch 1947) added to the paired example draws, the same estimand as bootstrap_interval;
    in simulation with 3 seeds a side it calls identical systems different in under 5% of cases
    (tests/test_stats.py), where redrawing seeds with replacement did in 6-14%. With one seed on
    either side the test covers test sampling only: "seed_aware" is False and a caller may at most
    suggest a difference.

    Returns {"value_a", "value_b", "diff", "lo", "hi", "p_a_better", "verdict", "seed_aware", "n",
    "seeds", "n_boot", "level", "method"}: diff = value A - value B on the full test set, [lo, hi]
    its percentile interval, p_a_better the fraction of replicates in which A is strictly better.
    verdict is "A better" or "B better" only when the interval excludes 0, else "tied" (identical
    systems give a zero-width interval at 0: "tied").
    """
    _check_level(level)
    a, b = _per_seed(values_a), _per_seed(values_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"A and B are scored on different examples: {a.shape[1]} vs {b.shape[1]}")
    sums, totals, kind = _units(list(a) + list(b), weights, groups)
    points = _apply(transform, sums.sum(axis=1) / totals.sum())
    pa, pb = points[:len(a)], points[len(a):]
    boot = _apply(transform, _resampled_means(sums, totals, n_boot, seed))
    diffs = boot[:len(a)].mean(axis=0) - boot[len(a):].mean(axis=0)
    seed_aware = min(len(a), len(b)) >= 2
    if seed_aware:
        var_a, var_b = pa.var(ddof=1) / len(a), pb.var(ddof=1) / len(b)
        diffs = diffs + _seed_stage(var_a + var_b, welch_df(var_a, var_b, len(a), len(b)), n_boot, seed)
    lo, hi = _percentiles(diffs, level)
    sign = 1.0 if higher_is_better else -1.0
    better_lo, better_hi = sorted((sign * lo, sign * hi))  # the interval of "how much A is better"
    verdict = "A better" if better_lo > 0 else "B better" if better_hi < 0 else "tied"
    over = kind if len(a) == len(b) == 1 else f"{kind} + Welch t over seeds, {len(a)} vs {len(b)}" if seed_aware \
        else f"{kind}; seeds {len(a)} vs {len(b)}, seed variation not measured"
    value_a, value_b = float(pa.mean()), float(pb.mean())
    return {"value_a": value_a, "value_b": value_b, "diff": value_a - value_b, "lo": lo, "hi": hi,
            "p_a_better": float(np.mean(sign * diffs > 0)), "verdict": verdict, "seed_aware": seed_aware,
            "n": int(a.shape[1]), "seeds": (len(a), len(b)), "n_boot": int(n_boot), "level": float(level),
            "method": f"paired bootstrap (percentile, {over})"}


def seed_interval(values, level: float = 0.95) -> dict:
    """Mean over training seeds with a Student-t interval: mean +- t(0.975, k-1) * sd / sqrt(k).

    Seeds are few (3-5), so the normal 1.96 would be far too narrow; the t quantiles come from a
    table for 1..30 degrees of freedom (1.96 beyond). Only level=0.95 is supported, since the table
    holds only that quantile. With one seed there is no spread to measure: lo and hi are None.
    Returns {"value", "lo", "hi", "sd", "n", "level", "method"}.
    """
    if level != 0.95:
        raise ValueError("seed_interval supports only level=0.95 (tabulated t quantiles)")
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("seed_interval needs at least one finite value")
    mean = float(x.mean())
    if x.size == 1:
        return {"value": mean, "lo": None, "hi": None, "sd": None, "n": 1, "level": level,
                "method": "one seed: no interval"}
    df = x.size - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96
    sd = float(x.std(ddof=1))
    half = t * sd / math.sqrt(x.size)
    return {"value": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": int(x.size),
            "level": level, "method": f"t-interval over seeds (df={df}, t={t})"}


# ---------------------------------------------------------------------------------------------------
# sacreBLEU's bootstrap
# ---------------------------------------------------------------------------------------------------

@contextmanager
def _sacrebleu_seed(seed: int):
    """sacreBLEU seeds its bootstrap from the SACREBLEU_SEED environment variable (default 12345);
    set it for the call and put the previous value back."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(int(seed))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def _sacrebleu_interval(metric, hypotheses: Sequence[str], references, n_boot: int, seed: int) -> dict:
    """Corpus score and bootstrap interval of a sacreBLEU metric object, computed by sacreBLEU.

    Metric.corpus_score(..., n_bootstrap=n) (what the CLI's --confidence runs) resamples sentence
    statistics with sacrebleu.significance._bootstrap_resample and keeps only the replicates' mean and
    half-width (Score._mean, Score._ci). To report the interval's endpoints we make the same two calls
    corpus_score makes: _extract_corpus_statistics, then _bootstrap_resample; lo and hi are the
    replicates at the indices sacreBLEU's Score.estimate_ci uses (n//40 from each end: 95%). "mu" and
    "ci" are sacreBLEU's own "mu +- ci" from estimate_ci on those same replicates.
    """
    from sacrebleu.significance import _bootstrap_resample  # private, but it is what corpus_score calls

    hyps = list(hypotheses)
    refs = list(references)
    if refs and isinstance(refs[0], str):  # one reference per hypothesis -> one reference stream
        refs = [refs]
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    metric._check_corpus_score_args(hyps, refs)
    stats = metric._extract_corpus_statistics(hyps, refs)
    score = metric._aggregate_and_compute(stats)
    with _sacrebleu_seed(seed):
        _, replicates = _bootstrap_resample(stats, metric, n_boot)
    score.estimate_ci(replicates)
    raw = sorted(r.score for r in replicates)
    cut = len(raw) // 40
    return {"value": float(score.score), "lo": float(raw[cut]), "hi": float(raw[len(raw) - cut - 1]),
            "mu": float(score._mean), "ci": float(score._ci), "n": len(hyps), "n_boot": int(n_boot),
            "level": 0.95, "method": f"sacreBLEU bootstrap (n={n_boot})"}


def bleu_interval(hypotheses: Sequence[str], references, n_boot: int = 1000, seed: int = 0) -> dict:
    """Corpus BLEU (sacreBLEU defaults: 13a tokenizer, exp smoothing) with sacreBLEU's 95% bootstrap.

    references: one string per hypothesis, or sacreBLEU's list of reference streams.
    Returns {"value", "lo", "hi", "mu", "ci", "n", "n_boot", "level", "method"}.
    """
    from sacrebleu.metrics import BLEU

    return _sacrebleu_interval(BLEU(), hypotheses, references, n_boot, seed)


def chrf_interval(hypotheses: Sequence[str], references, n_boot: int = 1000, seed: int = 0) -> dict:
    """Corpus chrF (sacreBLEU defaults: chrF2, character 6-grams) with sacreBLEU's 95% bootstrap.
    Same arguments and result as bleu_interval."""
    from sacrebleu.metrics import CHRF

    return _sacrebleu_interval(CHRF(), hypotheses, references, n_boot, seed)
