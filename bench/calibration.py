"""Calibration of the report's significance tests (#21.2): how often each calls two systems different when
they are identical in distribution (false positives, nominal 5%) and how often it finds a planted real
difference (power), on simulated test sets with seed effects.

A replicate draws one test set of `--examples` items (item logits N(0.5, 1.5)) and, for each system and each
of its `--seeds` training seeds, a seed offset N(0, spread) added to every item's logit; an item is answered
correctly with probability sigmoid(logit + shift), shift being the planted gain of system A. Both systems
answer the same items (the tests are paired). Tests compared:

- one seed (Koehn 2004): the paired bootstrap over test items on seed 0 of each system; the report prints
  a difference found this way as 'suggested, one seed', never as a verdict;
- old two-stage: seeds redrawn with replacement, then items (what the report used before #21);
- Welch t on the seed means alone (ignores test sampling);
- new (pipeline.stats.paired_bootstrap): paired item draws plus a Welch t seed stage, what the report uses.

    python -m bench.calibration [--replicates 500] [--seeds 3] [--examples 300] [--n-boot 200]

Writes bench/results/calibration.json and .md. A numpy simulation: seconds to minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from bench import write_results
from pipeline import stats

OUT = Path(__file__).parent / "results" / "calibration.json"
SCENARIOS = [  # (seed spread in logits, planted gain of A in logits)
    (0.3, 0.0), (0.6, 0.0), (1.0, 0.0), (0.3, 0.5), (0.3, 1.0), (0.6, 1.0)]


def outcomes(rng, difficulty: np.ndarray, spread: float, shift: float, seeds: int) -> np.ndarray:
    offsets = rng.normal(0.0, spread, (seeds, 1))
    return (rng.random((seeds, len(difficulty))) < 1 / (1 + np.exp(-(difficulty + shift + offsets)))).astype(float)


def one_seed(a, b, n_boot, r) -> str:
    return stats.paired_bootstrap(a[0], b[0], n_boot=n_boot, seed=r)["verdict"]


def old_two_stage(a, b, n_boot, r) -> str:
    """Seeds of each system redrawn with replacement, the same item draw for both, percentile interval."""
    rng = np.random.default_rng([r, 7])
    k, n = a.shape
    items = rng.integers(0, n, (n_boot, n))
    mean_a, mean_b = a[:, items].mean(axis=2), b[:, items].mean(axis=2)  # (seeds, n_boot)
    pick_a, pick_b = rng.integers(0, k, (n_boot, k)), rng.integers(0, k, (n_boot, k))
    diffs = (np.take_along_axis(mean_a.T, pick_a, axis=1).mean(axis=1)
             - np.take_along_axis(mean_b.T, pick_b, axis=1).mean(axis=1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return "A better" if lo > 0 else "B better" if hi < 0 else "tied"


def welch_seed_means(a, b, n_boot, r) -> str:
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    va, vb = ma.var(ddof=1) / len(ma), mb.var(ddof=1) / len(mb)
    if not va + vb > 0:
        return "tied" if ma.mean() == mb.mean() else ("A better" if ma.mean() > mb.mean() else "B better")
    df = stats.welch_df(va, vb, len(ma), len(mb))
    t = stats._T975[min(max(int(math.floor(df)), 1), len(stats._T975)) - 1]  # floor(df): slightly conservative
    half = t * math.sqrt(va + vb)
    d = ma.mean() - mb.mean()
    return "A better" if d - half > 0 else "B better" if d + half < 0 else "tied"


def new(a, b, n_boot, r) -> str:
    return stats.paired_bootstrap(a, b, n_boot=n_boot, seed=r)["verdict"]


TESTS = {"one seed, paired bootstrap": one_seed, "old: seeds redrawn + items": old_two_stage,
         "Welch t on seed means": welch_seed_means, "new: paired items + Welch t seed stage": new}


def simulate(replicates: int, seeds: int, examples: int, n_boot: int) -> list[dict]:
    rows = []
    for spread, shift in SCENARIOS:
        rng = np.random.default_rng([int(spread * 10), int(shift * 10), seeds])
        calls = {name: {"A better": 0, "B better": 0, "tied": 0} for name in TESTS}
        for r in range(replicates):
            difficulty = rng.normal(0.5, 1.5, examples)
            a = outcomes(rng, difficulty, spread, shift, seeds)
            b = outcomes(rng, difficulty, spread, 0.0, seeds)
            for name, test in TESTS.items():
                calls[name][test(a, b, n_boot, r)] += 1
        for name, c in calls.items():
            rows.append({"test": name, "seed_spread": spread, "planted_gain": shift, "replicates": replicates,
                         "called_different": (c["A better"] + c["B better"]) / replicates,
                         "found_a_better": c["A better"] / replicates})
    return rows


def table(report: dict) -> str:
    p = report["params"]
    lines = [f"Significance tests on simulated paired test sets ({p['examples']} items, {p['seeds']} seeds per "
             f"system, {p['replicates']} replicates per cell, {p['n_boot']} bootstrap draws; nominal 5%). "
             "Identical systems: the share of replicates called different (false positives). Planted gain: "
             "the share in which A is found better (power).", "",
             "| test | " + " | ".join(f"{'identical' if g == 0 else f'gain {g}'}, spread {s}" for s, g in SCENARIOS) + " |",
             "| :-- |" + " --: |" * len(SCENARIOS)]
    for name in TESTS:
        cells = []
        for s, g in SCENARIOS:
            row = next(r for r in report["rows"] if r["test"] == name and r["seed_spread"] == s and r["planted_gain"] == g)
            cells.append(f"{100 * (row['called_different'] if g == 0 else row['found_a_better']):.1f}%")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = simulate(args.replicates, args.seeds, args.examples, args.n_boot)
    report = {"params": {"replicates": args.replicates, "seeds": args.seeds, "examples": args.examples,
                         "n_boot": args.n_boot, "item_logits": "N(0.5, 1.5)"},
              "rows": rows, "wall_s": round(time.perf_counter() - start, 1)}
    write_results(report, OUT, table(report))


if __name__ == "__main__":
    main()
