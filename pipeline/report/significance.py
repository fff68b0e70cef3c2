"""Every interval and every "better" of the report, from each run's per-example outcomes
(pipeline/outcomes.py) and pipeline/stats.py.

One estimand for every quality number (one_estimand): how far the metric, averaged over the run's
seeds, would move with other seeds and another test set of the same kind: a two-stage bootstrap
(test examples, then seeds). With one seed only test sampling is measured, and the interval says so.
The evaluate stage computes these intervals (pipeline/outcomes.py estimand_intervals) into eval.json;
the report uses them as they are and recomputes them, with the same code, only for an older eval.json.

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
    return outcomes.stacked([_load(str(p)) for p in found])


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


def carries_estimand(interval: dict | None) -> bool:
    """Whether an eval.json interval is already ESTIMAND's: the evaluate stage writes it since #21 (with
    `seeds` and `seed_variation`); older eval.json files (docs/ published before, a fixture) have a bootstrap
    over one seed's test examples or a t-interval over seeds, without them."""
    return bool(interval) and "seed_variation" in interval


def one_estimand(result: dict, recompute: bool = False) -> None:
    """Give the run ESTIMAND's overall, per-bucket and extra-split intervals. eval.json's are used as they are
    where the evaluate stage wrote them (carries_estimand); they are recomputed (pipeline/outcomes.py, the
    code evaluate runs) only for an older eval.json, or with `recompute` (rescore, whose per-seed numbers
    come from the published outcomes, not from eval.json). Without outcomes (BLEU and chrF, or a run whose
    examples/ are not on disk) each seed's own test-sampling interval is combined with the seeds' spread."""
    metric = result["metric"]
    if recompute or not carries_estimand(result.get("overall_interval")):
        found = None if metric == "bleu" else outcomes_of(result)
        if found is None:
            result.update(outcomes.intervals_over_seeds(result["seeds"], metric, len(result["buckets"]["edges"])))
        else:
            result.update(outcomes.estimand_intervals(found, metric, len(result["buckets"]["edges"]))["run"])
    for split, entry in (result.get("extrapolation") or {}).items():
        if recompute or not carries_estimand(entry.get("interval")):
            extra = outcomes_of(result, split)
            if extra is not None:
                entry["interval"] = outcomes.estimand_interval(extra, metric)


def in_bucket(a: dict, b: dict, bucket: int) -> str:
    """"better" | "suggested" | "tied" | "worse" | "not paired": run `a` against run `b` on the test examples
    of one length bucket (paired, with Welch t over seeds), for the verdict's per-bucket winner; a difference
    found with one seed on either side is only "suggested". A bucket filled from a longer test split
    (verdict_lengths.with_length_splits) is tested on all of that split's outcomes, as its value is the split's
    overall metric (MQAR's queries sit at every position of a sequence, not only in the last bucket)."""
    if a["metric"] == "bleu":
        return "not paired"
    split = (a.get("bucket_split") or {}).get(bucket, "")
    if split != (b.get("bucket_split") or {}).get(bucket, ""):
        return "not paired"
    oa, ob = outcomes_of(a, split), outcomes_of(b, split)
    if not _pairs(oa, ob):
        return "not paired"
    keep = oa["bucket"] == bucket if not split else np.ones(oa["bucket"].shape, bool)
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
