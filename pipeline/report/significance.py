"""Which differences between models are real: a paired bootstrap on the same test examples
(pipeline/stats.py, Koehn 2004), read from each run's per-example outcomes (pipeline/outcomes.py).

For each task, models are ranked by their test metric and each is compared with the next one:
"better" only when the 95% interval of the difference excludes zero, else "tied". A model whose
outcomes are missing or do not pair example by example with the others (another test set) gets
"not paired"; corpus-level metrics (BLEU) are compared by their sacreBLEU intervals instead.
With several training seeds every seed's outcomes take part: the bootstrap redraws the seeds as
well as the examples (stats.paired_bootstrap), so the verdict covers seed-to-seed variation too.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline import outcomes, stats

N_BOOT = 1000


def outcomes_of(result: dict) -> dict | None:
    """Every seed's per-example outcomes of a run, found beside its eval.json, with `values` stacked
    [seeds, n] (None if a seed's file is missing or the seeds were scored on different examples)."""
    directory = Path(result["_path"]).parent / "examples"
    found = [directory / f"seed{s['seed']}.npz" for s in result["seeds"]]
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


def in_bucket(a: dict, b: dict, bucket: int) -> str:
    """"better" | "tied" | "worse" | "not paired": run `a` against run `b` on the test examples of one
    length bucket (a paired bootstrap restricted to that bucket), for the verdict's per-bucket winner."""
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
    return {"A better": "better", "B better": "worse"}.get(r["verdict"], "tied")


def compare(a: dict, b: dict) -> dict | None:
    """stats.paired_bootstrap of run `a` against run `b` over their test examples (and seeds): diff,
    [lo, hi], verdict; None where the outcomes do not pair (missing, another test set, BLEU)."""
    if a["metric"] == "bleu":
        return None
    oa, ob = outcomes_of(a), outcomes_of(b)
    if not _pairs(oa, ob):
        return None
    return stats.paired_bootstrap(oa["values"], ob["values"], weights=oa["weights"], groups=oa["group"],
                                  higher_is_better=bool(a["higher_is_better"]),
                                  transform=outcomes.transform_for(a["metric"]), n_boot=N_BOOT)


def vs_next(task_results: list[dict]) -> dict[str, str]:
    """{model: "better" | "tied" | "not paired" | ""} against the next model in the ranking ("" for the last)."""
    if not task_results:
        return {}
    first = task_results[0]
    if first["metric"] == "bleu":
        return {r["model"]: "not paired" for r in task_results} if len(task_results) > 1 else {first["model"]: ""}
    loaded = {r["model"]: outcomes_of(r) for r in task_results}
    ok = {m: o for m, o in loaded.items() if o is not None}
    ref = next(iter(ok.values()), None)
    paired = {m: o for m, o in ok.items() if _pairs(o, ref)}
    out = {m: "not paired" for m in loaded if m not in paired}
    if len(paired) < 2:
        return {**out, **{m: "" for m in paired}}
    ranked = stats.rank_with_ties({m: o["values"] for m, o in paired.items()}, bool(first["higher_is_better"]),
                                  weights=ref["weights"], groups=ref["group"],
                                  transform=outcomes.transform_for(first["metric"]), n_boot=N_BOOT)
    out.update({name: verdict or "" for name, _, verdict in ranked})
    return out
