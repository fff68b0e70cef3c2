"""Complexity exponents and crossover lengths from a length sweep (numpy only: the report uses it).

A cost that grows as c·n^k is a line of slope k on log-log axes, so the exponent is the
least-squares slope of log(cost) on log(n), with a 95% interval from the t distribution on n - 2
degrees of freedom (the usual interval of a regression slope). Fitted over the upper part of the
sweep, where the asymptotic term dominates fixed costs (kernel launch, Python overhead, weights).

A claim holds when the whole 95% interval of the fitted exponent lies within `CLAIM_TOLERANCE` of it
(fixed costs bend a curve below its asymptotic slope even at n = 8K) and excludes the exponent the
claim is meant to rule out (`ALTERNATIVE`: a fixed state's 0 per decoded token against a KV cache's
1); it does not hold when the whole interval lies outside that band; otherwise the measurement
cannot tell ("inconclusive", or "approaching" when the local slopes move toward the claim). A fit
on fewer than `MIN_POINTS` lengths decides nothing. A verdict is never stronger than its interval:
S4D's decode exponent −0.01 [−4.63, 4.60] neither holds nor fails a claim of 0.

An exponent can also be set against the model's own FLOP count over the same lengths
(flop_exponent): a causal Transformer layer of width d spends about 2·n²·d FLOPs on attention per
sequence (4·n²·d without the mask) beside about 24·n·d² on projections and MLP, so its cost is not
yet n² below n ≈ 12·d, and a slope between 1 and 2 there is what its FLOP count predicts, not a
shortfall of the claim (cost_model_verdict).

Decode latency is timed in interleaved rounds (pipeline/measure/sweep.py), and its exponent is the mean
of the rounds' slopes with a t-interval over them, widened by the slope's measured sd between processes
(fit_exponent_over_rounds, DECODE_SLOPE_SD).

A crossover length is named only where the ratio of the two models' costs is resolved on both sides of
it: its 95% interval, from each cell's own spread and the run-to-run spread of a cell's time
(TIMING_SD), lies above 1 below the crossover and below 1 from it on.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

# Two-sided 97.5% quantiles of Student's t by degrees of freedom (scipy is not a dependency).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
CLAIM_TOLERANCE = 0.2
Z95 = 1.96
MIN_POINTS = 4  # a slope with its interval from fewer lengths is no evidence either way
# The exponent each claimed one is meant to rule out: constant vs linear (decode per token: fixed state vs
# KV cache), linear vs quadratic (time and memory per sequence), quadratic vs linear.
ALTERNATIVE = {0: 1, 1: 2, 2: 1}


def t975(dof: int) -> float:
    if dof <= 0:
        return math.inf
    known = [d for d in _T975 if d <= dof]
    return _T975[max(known)] if dof <= 30 else 1.96


def fit_exponent(lengths: Sequence[float], costs: Sequence[Optional[float]], min_len: float = 0,
                 between_sd: float = 0.0) -> Optional[dict]:
    """Slope of log(cost) vs log(n) over points with n >= min_len and a positive cost.

    Returns {"exponent", "lo", "hi", "points", "lengths": [first, last], "r2"} or None when fewer
    than two points remain. With exactly two points the interval is unbounded (lo/hi None).
    `between_sd` is the slope's sd between processes (TIME_SLOPE_SD for timings): the residuals of one
    process's cells cannot see a drift over its sweep, so it widens the interval as an independent term."""
    pts = [(float(n), float(c)) for n, c in zip(lengths, costs)
           if c is not None and not math.isnan(float(c)) and float(c) > 0 and n >= min_len]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    resid = y - (ym + slope * (x - xm))
    dof = len(pts) - 2
    ss_tot = float(((y - ym) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    lo = hi = None
    if dof > 0:
        se = math.sqrt(float((resid ** 2).sum()) / dof / sxx)
        half = math.hypot(t975(dof) * se, Z95 * between_sd)
        lo, hi = slope - half, slope + half
    return {"exponent": slope, "lo": lo, "hi": hi, "points": len(pts),
            "lengths": [int(pts[0][0]), int(pts[-1][0])], "r2": r2}


def fit_exponent_over_rounds(lengths: Sequence[float], rounds: Sequence[Sequence[float]],
                             min_len: float = 0, between_sd: float = 0.0) -> Optional[dict]:
    """The exponent from repeated rounds of timings that each visited every length (rounds[i][r]: length
    i in round r): the mean of the rounds' least-squares slopes, with the 95% t-interval over those slopes
    on rounds - 1 degrees of freedom. A drift of the host shared by one round moves its level, not its
    slope, and what is left varies from round to round, so the interval measures it. The mean of the
    slopes is the slope of the rounds' mean log cost (least squares is linear in y). Returns
    fit_exponent's dict over that mean curve with this exponent and interval, plus "rounds" and
    "slopes"; with one round, fit_exponent's own residual interval. `between_sd` is the sd of the slope
    between processes (DECODE_SLOPE_SD), which the rounds of one process cannot see; it widens the interval
    as an independent normal term."""
    kept = [(n, [float(v) for v in r]) for n, r in zip(lengths, rounds)
            if n >= min_len and r and all(v > 0 and not math.isnan(v) for v in r)]
    if len(kept) < 2:
        return None
    k = min(len(r) for _, r in kept)
    ns = [n for n, _ in kept]
    mean_curve = [math.exp(sum(math.log(v) for v in r[:k]) / k) for _, r in kept]
    fit = fit_exponent(ns, mean_curve)
    if k < 2:
        return fit
    slopes = [fit_exponent(ns, [r[j] for _, r in kept])["exponent"] for j in range(k)]
    mean = sum(slopes) / k
    half = math.hypot(t975(k - 1) * float(np.std(slopes, ddof=1)) / math.sqrt(k), Z95 * between_sd)
    return {**fit, "exponent": mean, "lo": mean - half, "hi": mean + half, "rounds": k, "slopes": slopes}


def local_exponents(lengths: Sequence[float], costs: Sequence[Optional[float]]) -> list[dict]:
    """The slope between each pair of consecutive measured lengths: how the exponent evolves with n
    (a + b·n² per sequence has local slope 1 + b·n / (a + b·n), rising from 1 toward 2)."""
    pts = [(float(n), float(c)) for n, c in zip(lengths, costs)
           if c is not None and not math.isnan(float(c)) and float(c) > 0]
    return [{"length": int(n2), "exponent": math.log(c2 / c1) / math.log(n2 / n1)}
            for (n1, c1), (n2, c2) in zip(pts, pts[1:])]


def verdict(fit: Optional[dict], claimed: Optional[float], tolerance: float = CLAIM_TOLERANCE,
            local: Optional[list[dict]] = None, min_points: int = MIN_POINTS) -> str:
    """'holds' / 'approaching' / 'inconclusive' / 'does not hold' / 'not measurable here'.

    Holds: the fit's whole 95% interval is within `tolerance` of the claim and excludes ALTERNATIVE[claim];
    a fit on fewer than `min_points` lengths: 'inconclusive (n points)'. Approaching: the fit is not, but
    the local exponents trend toward the claim as n grows (least-squares slope over the sweep) and the
    last one is closer to it than the fit (lower-order terms still dominate at these lengths). Does not
    hold: the whole interval is outside the band. Otherwise inconclusive."""
    if fit is None or claimed is None:
        return "not measurable here"
    if fit["points"] < min_points or fit["lo"] is None:
        return f"inconclusive ({fit['points']} points)"
    lo, hi = fit["lo"], fit["hi"]
    band = (claimed - tolerance, claimed + tolerance)
    alternative = ALTERNATIVE.get(claimed)
    excluded = alternative is None or hi < alternative or lo > alternative
    if band[0] <= lo and hi <= band[1] and excluded:  # the whole interval, not only the point estimate
        return "holds"
    local = local or []
    if len(local) >= 3 and abs(fit["exponent"] - claimed) > tolerance:
        # the trend of the local slopes over the whole sweep, not each step: one noisy octave (a Transformer's
        # read 2.08, 0.88, 1.84 on a busy host) must not hide the direction
        octaves = np.log2([e["length"] for e in local])
        trend = np.polyfit(octaves, [e["exponent"] for e in local], 1)[0]
        moved = trend * (octaves[-1] - octaves[0]) * np.sign(claimed - fit["exponent"])  # toward the claim
        last = local[-1]["exponent"]
        if moved >= tolerance / 2 and abs(claimed - last) < abs(claimed - fit["exponent"]):
            return f"approaching (local {local[0]['exponent']:.2f} → {last:.2f})"
    if hi < band[0] or lo > band[1]:  # the whole interval outside it, and not moving toward it
        return "does not hold"
    return f"inconclusive (interval {lo:.2f}–{hi:.2f} reaches past ±{tolerance} of {claimed:g})"


def flop_exponent(lengths: Sequence[float], flops_per_token: Sequence[Optional[float]], first: float,
                  last: float) -> Optional[dict]:
    """The exponent a model's FLOP count predicts for its cost per sequence (flops per token x n) over
    the lengths first..last of a fit, with the local slopes at the two ends; None without counts."""
    pts = [(n, f) for n, f in zip(lengths, flops_per_token) if f and first <= n <= last]
    if len(pts) < 2:
        return None
    n, cost = [p[0] for p in pts], [p[0] * p[1] for p in pts]
    local = local_exponents(n, cost)
    return {"exponent": fit_exponent(n, cost)["exponent"], "local": [local[0]["exponent"], local[-1]["exponent"]]}


def cost_model_verdict(fit: Optional[dict], predicted: Optional[dict], tolerance: float = CLAIM_TOLERANCE,
                       min_points: int = MIN_POINTS) -> str:
    """The measured exponent against its FLOP count's, by the claim verdict's rule: 'matches its FLOP
    count's 1.60 (local 1.28 → 1.76)' when the whole interval lies within ±tolerance of the prediction,
    'differs from' when it lies wholly outside that band, 'consistent with' when it holds the prediction
    but reaches past the band, else 'inconclusive against' (an interval that excludes the prediction by
    less than the tolerance: S4D's 1.07–1.18 against 1.00 read 'differs' in one run, 'matches' in the
    next); '—' without a fit or a FLOP count."""
    if not fit or not predicted:
        return "—"
    p, (first, last) = predicted["exponent"], predicted["local"]
    notes = [f"local {first:.2f} → {last:.2f}"] if abs(last - first) >= 0.05 else []
    if fit["points"] < min_points or fit["lo"] is None:
        return f"inconclusive ({fit['points']} points) against its FLOP count's {p:.2f}"
    interval = f"interval {fit['lo']:.2f}–{fit['hi']:.2f}"
    lo, hi = fit["lo"], fit["hi"]
    word = "matches" if p - tolerance <= lo and hi <= p + tolerance else \
        "differs from" if hi < p - tolerance or lo > p + tolerance else \
        "consistent with" if lo <= p <= hi else "inconclusive against"
    notes += [] if word == "matches" else [interval]
    return f"{word} its FLOP count's {p:.2f}" + (f" ({'; '.join(notes)})" if notes else "")


# The sd of log(time) of one benchmark cell between two benchmark processes on the same host: host load
# and CPU frequency change between processes, so a cell's own IQR (one process) understates how far a
# ratio of two models' cells (two processes) moves from run to run. Measured on two runs of the same
# code, docs/verdict-stability.md. Peak memory is exact from run to run (sd 0).
TIMING_SD = 0.15
# The sd of a decode exponent between benchmark processes on the same host, beyond the spread of one
# process's interleaved rounds: the Transformer's KV-cache slope over 256-4K read 0.40, 0.31 and 0.41 in
# three processes whose own intervals were ±0.04-0.09 (sd of the three 0.055; fixed-state models 0.01-0.02).
# Measured by bench/decode_stability.py, docs/verdict-stability.md.
DECODE_SLOPE_SD = 0.05
# The sd of a time exponent (train, inference, batch-1 train; 1K-8K) between benchmark runs on the same
# host: 0.065 as the rms over 6 models x 3 series of each one's sd across 5 runs (0.02-0.16), where one
# run's own interval was often ±0.01-0.04: the cells of a sweep are timed one length after another, so a
# drift of the host bends the slope. docs/verdict-stability.md.
TIME_SLOPE_SD = 0.065


def log_sd(median: float, iqr: Optional[float] = None, runs: Optional[int] = None, floor: Optional[float] = None) -> float:
    """The sd of log(median) of one timed cell: the sampling error of a median of `runs` timings (IQR/1.349
    as the sd, times 1.2533/sqrt(runs)) together with the run-to-run `floor`."""
    floor = TIMING_SD if floor is None else floor
    within = 0.0
    if iqr and runs and median > 0:
        within = 1.2533 * iqr / 1.349 / median / math.sqrt(runs)
    return math.hypot(within, floor)


def ratio_interval(model: float, reference: float, model_sd: float = 0.0, reference_sd: float = 0.0,
                   z: float = Z95) -> tuple[float, float, float]:
    """model / reference with its 95% interval, from the sds of the two logs (independent processes)."""
    ratio, half = model / reference, z * math.hypot(model_sd, reference_sd)
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def crossover(lengths: Sequence[int], model: Sequence[Optional[float]], reference: Sequence[Optional[float]],
              model_sd: Optional[Sequence[float]] = None, reference_sd: Optional[Sequence[float]] = None) -> dict:
    """From which length `model` costs less than `reference` (lower is better: seconds per token, bytes),
    judged on the 95% interval of their ratio at each length (sds of the logs; None: exact values).

    Each common length is cheaper (interval below 1), dearer (above 1) or within noise. Returns
    {"kind", "length", "upper", "noisy"}: "always" when cheaper at every length; "from" n when dearer
    just below n and cheaper at n and every longer length; "between" length and upper when dearer at
    length, cheaper from upper on, and within noise in between; "never" when dearer at the longest;
    otherwise "unresolved" (no crossover is named), with "length" the first of the cheaper lengths that
    run to the end, if any. "noisy" lists the lengths within noise."""
    common = [(n, m, r, model_sd[i] if model_sd else 0.0,
               reference_sd[i] if reference_sd else 0.0)
              for i, (n, m, r) in enumerate(zip(lengths, model, reference))
              if m is not None and r is not None and not (math.isnan(m) or math.isnan(r))]
    if not common:
        return {"length": None, "kind": "not measurable", "noisy": []}
    side = []
    for _, m, r, sm, sr in common:
        _, lo, hi = ratio_interval(m, r, sm, sr)
        side.append(-1 if hi < 1 else 1 if lo > 1 else 0)  # cheaper / dearer / within noise
    noisy = [int(c[0]) for c, s in zip(common, side) if s == 0]
    first = len(side)  # the start of the run of cheaper lengths that reaches the longest
    while first > 0 and side[first - 1] == -1:
        first -= 1
    tail = None if first == len(side) else int(common[first][0])
    dearer = [i for i, s in enumerate(side) if s == 1]
    if dearer and dearer[-1] == len(side) - 1:
        return {"length": None, "kind": "never", "noisy": noisy}
    if first == 0:
        return {"length": tail, "kind": "always", "noisy": noisy}
    if tail is not None and dearer and all(s == 0 for s in side[dearer[-1] + 1:first]):
        if dearer[-1] == first - 1:
            return {"length": tail, "kind": "from", "noisy": noisy}
        return {"length": int(common[dearer[-1]][0]), "upper": tail, "kind": "between", "noisy": noisy}
    return {"length": tail, "kind": "unresolved", "noisy": noisy}


def predict(lengths: Sequence[float], costs: Sequence[Optional[float]], at: float) -> Optional[float]:
    """Extrapolate a cost to length `at` from the last two positive measurements (log-log line);
    the benchmark uses it to skip cells that would exceed its memory or time cap."""
    pts = [(n, c) for n, c in zip(lengths, costs) if c is not None and c > 0]
    if len(pts) < 2:
        return None
    (n1, c1), (n2, c2) = pts[-2], pts[-1]
    if n2 == n1:
        return c2
    slope = max(0.0, math.log(c2 / c1) / math.log(n2 / n1))
    return c2 * (at / n2) ** slope
