"""Every interval and every "better" of the report, from each run's per-example outcomes
(pipeline/outcomes.py) and pipeline/stats.py.

One estimand for every quality number (one_estimand): how far the metric, averaged over the run's
seeds, would move with other seeds and another test set of the same kind: a two-stage bootstrap
(test examples, then seeds). With one seed only test sampling is measured, and the interval says so.

For each task, models are ranked by their test metric and each is compared with the next one: a
paired bootstrap on the same test examples (Koehn 2004) with Welch's t on the seed means on top
when both have two or more seeds ("better" only when the 95% interval of the difference excludes
zero, else "tied"); with one seed a significant difference is only "suggested (one seed)". A model
whose outcomes are missing or do not pair example by example with the others (another test set)
gets "not paired"; corpus-level metrics (BLEU) are not paired.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline import outcomes, stats

N_BOOT = 1000


def outcomes_of(result: dict, split: str = "") -> dict | None:
    """Every seed's per-example outcomes of a run (of an extra test `split`), found beside its eval.json,
    with `values` stacked [seeds, n] (None if a seed's file is missing or the seeds differ in examples)."""
    if "_path" not in result:
        return None
    directory = Path(result["_path"]).parent / "examples"
    found = [directory / f"seed{s['seed']}{'.' + split if split else ''}.npz" for s in result["seeds"]]
    if not found or not all(p.exists() for p in found):
        return None
    loaded = [_load(str(p)) for p in found]
    first = loaded[0]
    if any(len(o["values"]) != len(first["values"]) or not np.array_equal(o["group"], first["group"])
           for o in loaded[1:]):
        return None
    return {**first, "values": np.stack([o["values"] for o in loaded])}


@lru_cache(maxsize=64)
def _load(path: str) -> dict:
    return outcomes.load(Path(path))


def _pairs(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and a["values"].shape[-1] == b["values"].shape[-1] \
        and np.array_equal(a["group"], b["group"]) and np.array_equal(a["weights"], b["weights"])


ESTIMAND = ("95% intervals are of the metric averaged over a run's seeds, as it would vary with other training "
            "seeds and another test set of the same size: a two-stage bootstrap (test examples resampled, whole "
            "sequences where tokens are scored; then the seeds' spread as a Student t draw). With one seed the "
            "interval covers test sampling only and the seeds column says so: seed variation is not measured. For BLEU "
            "and chrF, and for runs whose per-example outcomes are not on disk, each seed's own bootstrap interval "
            "over the test set stands in for the first stage.")


def _interval(o: dict, metric: str, keep=None) -> dict | None:
    values, weights, group = o["values"], o["weights"], o["group"]
    if keep is not None:
        if not keep.any():
            return None
        values, weights, group = values[:, keep], weights[keep], group[keep]
    r = stats.bootstrap_interval(values, weights, group, n_boot=N_BOOT, transform=outcomes.transform_for(metric))
    return {k: r[k] for k in ("lo", "hi", "value", "n", "seeds", "seed_variation", "method")}


def one_estimand(result: dict) -> None:
    """Replace the run's overall, per-bucket and extra-split intervals (evaluate's: a bootstrap over test
    examples with one seed, a t-interval over seeds with several) by ESTIMAND's, computed from the
    outcomes. Without outcomes (BLEU and chrF, or a run whose examples/ are not on disk) each seed's own
    test-sampling interval in eval.json is combined with the seeds' spread (stats.interval_over_seeds)."""
    metric = result["metric"]
    found = None if metric == "bleu" else outcomes_of(result)
    if found is None:
        _from_seed_intervals(result)
        return
    result["overall_interval"] = _interval(found, metric)
    result["per_bucket_interval"] = [_interval(found, metric, found["bucket"] == b)
                                     for b in range(len(result["buckets"]["edges"]))]
    for split, entry in (result.get("extrapolation") or {}).items():
        extra = outcomes_of(result, split)
        if extra is not None:
            entry["interval"] = _interval(extra, metric)


def _from_seed_intervals(result: dict) -> None:
    seeds = result["seeds"]
    if len(seeds) < 2:  # one seed: evaluate's interval is that seed's bootstrap over test examples already
        return
    keys = [("overall_interval", "overall", "interval")] + \
        ([("chrf_interval", "chrf", "chrf_interval")] if result["metric"] == "bleu" else [])
    for key, value, interval in keys:
        if all(s.get(value) is not None and s.get(interval) for s in seeds):
            result[key] = stats.interval_over_seeds([s[value] for s in seeds], [s[interval] for s in seeds])
    if all(s.get("per_bucket_interval") for s in seeds):
        result["per_bucket_interval"] = [
            None if any(s["per_bucket"][i] is None for s in seeds) else
            stats.interval_over_seeds([s["per_bucket"][i] for s in seeds], [s["per_bucket_interval"][i] for s in seeds])
            for i in range(len(result["buckets"]["edges"]))]


def in_bucket(a: dict, b: dict, bucket: int) -> str:
    """"better" | "suggested" | "tied" | "worse" | "not paired": run `a` against run `b` on the test examples
    of one length bucket (paired, with Welch t over seeds), for the verdict's per-bucket winner; a difference
    found with one seed on either side is only "suggested"."""
    if a["metric"] == "bleu":
        return "not paired"
    oa, ob = outcomes_of(a), outcomes_of(b)
    if not _pairs(oa, ob):
        return "not paired"
    keep = oa["bucket"] == bucket
    if not keep.any():
        return "not paired"
    r = stats.paired_bootstrap(oa["values"][:, keep], ob["values"][:, keep], weights=oa["weights"][keep],
                               groups=oa["group"][keep], higher_is_better=bool(a["higher_is_better"]),
                               transform=outcomes.transform_for(a["metric"]), n_boot=N_BOOT)
    return _word(r)


def _word(r: dict) -> str:
    word = {"A better": "better", "B better": "worse"}.get(r["verdict"], "tied")
    return "suggested" if word == "better" and not r["seed_aware"] else word


def compare(a: dict, b: dict) -> dict | None:
    """stats.paired_bootstrap of run `a` against run `b` over their test examples (and seeds): diff,
    [lo, hi], verdict, seed_aware; None where the outcomes do not pair (missing, another test set, BLEU)."""
    if a["metric"] == "bleu":
        return None
    oa, ob = outcomes_of(a), outcomes_of(b)
    if not _pairs(oa, ob):
        return None
    return stats.paired_bootstrap(oa["values"], ob["values"], weights=oa["weights"], groups=oa["group"],
                                  higher_is_better=bool(a["higher_is_better"]),
                                  transform=outcomes.transform_for(a["metric"]), n_boot=N_BOOT)


def vs_next(task_results: list[dict]) -> dict[str, str]:
    """{model: verdict} against the next model of `task_results`, which come in the summary's ranking ("" for
    the last): "better", "suggested (one seed)", "tied", "unresolved" (the test finds no difference but the
    two intervals do not overlap: "tied" is never printed beside intervals that are apart), "worse" (the
    test contradicts the ranking's point values) or "not paired"."""
    if not task_results:
        return {}
    first = task_results[0]
    if first["metric"] == "bleu":
        return {r["model"]: "not paired" for r in task_results} if len(task_results) > 1 else {first["model"]: ""}
    loaded = {r["model"]: outcomes_of(r) for r in task_results}
    ok = {m: o for m, o in loaded.items() if o is not None}
    ref = next(iter(ok.values()), None)
    paired = [r for r in task_results if r["model"] in ok and _pairs(ok[r["model"]], ref)]
    out = {m: "not paired" for m in loaded if m not in {r["model"] for r in paired}}
    for r, nxt in zip(paired, paired[1:]):
        word = _word(compare(r, nxt))
        out[r["model"]] = {"suggested": "suggested (one seed)"}.get(word, word)
        if word == "tied" and apart(r.get("overall_interval"), nxt.get("overall_interval")):
            out[r["model"]] = "unresolved"
    if paired:
        out[paired[-1]["model"]] = ""
    return out


def apart(a: dict | None, b: dict | None) -> bool:
    """True when two intervals are known and do not overlap."""
    if not a or not b or None in (a.get("lo"), a.get("hi"), b.get("lo"), b.get("hi")):
        return False
    return a["hi"] < b["lo"] or b["hi"] < a["lo"]
