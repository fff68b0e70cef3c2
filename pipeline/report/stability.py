"""Are the report's benchmark verdicts stable? The verdicts of two benchmark runs side by side.

    python -m pipeline stability results/bench <other>/results/bench

The report's verdict code runs on each run's results/bench/<model>.json. Every verdict falls into one of
two classes:

    firm        a claim verdict "holds" / "does not hold"; a FLOP-count verdict "matches" / "differs from";
                a crossover that is named ("at every length", "from n", "between n = a and b", "never");
                a per-length cost winner that is named
    unresolved  "inconclusive", "approaching", "consistent with", "no crossover resolved", "A ≈ B"

A verdict that flips between two runs of the same code must be unresolved in at least one of them. Two
firm verdicts that differ are a flip; two named crossovers are a flip only where the length ranges they
name do not overlap ("from n = 512" lies within "between n = 256 and 1024"). The command prints every
verdict that differs and exits 1 on a flip (docs/verdict-stability.md; tests/test_verdict_stability.py).
No torch here.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

from pipeline.measure import scaling
from pipeline.report import verdict
from pipeline.report.verdict_lengths import verdict_rows

FIRM_WORDS = ("holds", "does not hold", "matches", "differs from")
COST_COLUMNS = ("fastest to train", "fastest inference", "lowest decode latency", "leanest (train step)")


def _word(text: str) -> str:
    """The verdict without its numbers: 'inconclusive (interval 0.2–1.4 …)' -> 'inconclusive'."""
    return text.split(" (")[0].split(" its FLOP")[0].strip()


def _crossover_range(cross: dict, lengths: list[int]) -> Optional[tuple[float, float]]:
    """The lengths (lo, hi] a named crossover lies in; None when none is named."""
    kind, n = cross["kind"], cross.get("length")
    if kind == "always":
        return 0.0, float(lengths[0])
    if kind == "from":
        before = [m for m in lengths if m < n]
        return float(before[-1] if before else 0), float(n)
    if kind == "between":
        return float(n), float(cross["upper"])
    if kind == "never":
        return float(lengths[-1]), math.inf
    return None


def verdicts(bench: list[dict]) -> dict[tuple, dict]:
    """{(model, what): {"text", "firm", "range"}} for every verdict the report prints from the benchmark."""
    out: dict[tuple, dict] = {}
    for r in bench:
        verdict._rejudge(r)
        ok = [c for c in r["cells"] if c["status"] == "ok"]
        for key, entry in r["fits"].items():
            if entry and "claimed" in entry:
                text = entry["verdict"]
                out[(r["model"], f"{key} claim")] = {"text": text, "firm": _word(text) in FIRM_WORDS}
            fit = (entry or {}).get("fit")
            if key in ("train_time", "infer_time") and fit:
                predicted = scaling.flop_exponent([c["length"] for c in ok],
                                                  [c.get("forward_flops_per_token") for c in ok], *fit["lengths"])
                text = scaling.cost_model_verdict(fit, predicted)
                out[(r["model"], f"{key} vs FLOP count")] = {"text": text, "firm": _word(text) in FIRM_WORDS}
    lengths = sorted({c["length"] for r in bench for c in r["cells"]} |
                     {c["context"] for r in bench for c in r["decode"].get("cells", [])})
    for model, row in verdict.crossovers(bench).items():
        for label, cross in row.items():
            span = _crossover_range(cross, lengths) if cross["kind"] != "not measurable" else None
            out[(model, f"crossover: {label}")] = {"text": verdict._fmt_crossover(cross), "range": span,
                                                   "firm": span is not None}
    rows = verdict_rows([], bench)
    for row in rows.to_dict("records"):
        for column in COST_COLUMNS:
            text = row.get(column) or ""
            if text:
                out[(f"n = {row['length']}", column)] = {"text": text, "firm": "≈" not in text,
                                                         "winner": text.split(" ")[0]}
    return out


def compare(first: list[dict], second: list[dict]) -> dict:
    """{"differ": [(key, a, b)], "flips": [(key, a, b)], "count": verdicts compared}: a flip is a verdict
    that differs while firm in both runs (for crossovers: named ranges that do not overlap)."""
    a, b = verdicts(first), verdicts(second)
    differ, flips = [], []
    for key in sorted(set(a) & set(b), key=str):
        va, vb = a[key], b[key]
        if "range" in va:  # a crossover
            same = va["text"] == vb["text"]
        elif "winner" in va:  # a cost winner: the model named, and whether it is named at all
            same = (va["winner"], va["firm"]) == (vb["winner"], vb["firm"])
        else:
            same = _word(va["text"]) == _word(vb["text"])
        if same:
            continue
        differ.append((key, va["text"], vb["text"]))
        if va["firm"] and vb["firm"]:
            if "range" in va and va["range"][0] < vb["range"][1] and vb["range"][0] < va["range"][1]:
                continue  # two named crossovers whose ranges overlap say the same thing
            flips.append((key, va["text"], vb["text"]))
    return {"differ": differ, "flips": flips, "count": len(set(a) & set(b))}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(Path(p).is_dir() for p in argv):
        print("stability: give two folders of benchmark results (<model>.json each), e.g. "
              "`python -m pipeline stability results/bench other/results/bench`", file=sys.stderr)
        return 2
    runs = [verdict.load_bench(Path(p))[0] for p in argv]
    models = sorted({r["model"] for r in runs[0]} & {r["model"] for r in runs[1]})
    if not models:
        print(f"stability: no model has results in both {argv[0]} and {argv[1]}", file=sys.stderr)
        return 2
    result = compare(*[[r for r in run if r["model"] in models] for run in runs])
    print(f"{result['count']} verdicts on {len(models)} models ({', '.join(models)}); {len(result['differ'])} differ, "
          f"{len(result['flips'])} of them firm in both runs")
    for key, va, vb in result["differ"]:
        mark = "FLIP" if (key, va, vb) in result["flips"] else "ok  "
        print(f"  {mark} {key[0]} / {key[1]}: {va}  |  {vb}")
    return 1 if result["flips"] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
