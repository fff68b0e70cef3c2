"""Per-example test outcomes, and the intervals computed from them (pipeline/stats.py).

The evaluate stage keeps, per seed, every scored unit of the test split in
runs/<task>/<model>/examples/seed<k>.npz:

    values   float32  the metric term: NLL per token (LM, translation target side), 1/0 correct per
                      document (classification) or per target position (recall)
    weights  float32  its weight (1 where scored)
    bucket   int16    its length bucket (eval.json `buckets`)
    group    int32    the test example it belongs to (an LM window, a recall sequence): the bootstrap
                      resamples whole groups, since the terms of one sequence are correlated

Translation also writes examples/seed<k>.{hyp,ref,src}.txt (one sentence per line, test order), so
`sacrebleu examples/seed0.ref.txt -i examples/seed0.hyp.txt` re-scores the reported BLEU. The order
of units is the test loader's (sorted by length, stable), the same for every model of a task, so two
models' files pair example by example (paired bootstrap in the report).
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline import stats
from pipeline.artifacts import atomic_write

N_BOOT = 1000
PROGRESS_EVERY_S = 30.0


def transform_for(metric: str):
    """The reported metric as a function of the mean term: perplexity = exp(mean NLL)."""
    return np.exp if metric == "ppl" else None


def collect(module: Any, datamodule: Any, metric: Any = None) -> dict[str, np.ndarray]:
    """Run the module over the data's test split (`datamodule.test_split`) and keep every scored unit
    (weight > 0). `metric` (pipeline/tasks/metrics.py BucketSums) is updated with each batch as
    validation updates its BucketedMean, so one pass gives both the bucketed metric and the outcomes
    behind it."""
    import torch

    parts: dict[str, list] = {"values": [], "weights": [], "bucket": [], "group": []}
    seen = 0
    device = next(module.parameters()).device
    loader = datamodule.loader(datamodule.test_split)
    last = time.monotonic()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if time.monotonic() - last > PROGRESS_EVERY_S:  # a line a log file shows while a long test set runs
                last = time.monotonic()
                print(f"[evaluate] test batch {i}/{len(loader) if hasattr(loader, '__len__') else '?'}", flush=True)
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
            _, weights, bucket, values = module.per_example(batch)
            if metric is not None:
                metric.update(values, bucket, weights)
            rows = torch.arange(seen, seen + len(batch["ids"]), device=device)
            group = rows.view(-1, *([1] * (weights.dim() - 1))).expand_as(weights)
            keep = weights > 0
            for key, tensor in (("values", values), ("weights", weights), ("bucket", bucket), ("group", group)):
                parts[key].append(tensor[keep].float().cpu().numpy() if key in ("values", "weights")
                                  else tensor[keep].cpu().numpy())
            seen += len(batch["ids"])
    return {"values": np.concatenate(parts["values"]).astype(np.float32),
            "weights": np.concatenate(parts["weights"]).astype(np.float32),
            "bucket": np.concatenate(parts["bucket"]).astype(np.int16),
            "group": np.concatenate(parts["group"]).astype(np.int32)}


def save(path: Path, outcomes: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, with the same bytes for the same arrays: np.savez stamps every
    member with the current time, which would change the examples/ hash in dvc.lock on every run."""
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(outcomes):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(outcomes[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue())

    atomic_write(path, write)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def stacked(per_seed: list[dict[str, np.ndarray]]) -> Optional[dict[str, np.ndarray]]:
    """One run's outcomes over its seeds: `values` stacked [seeds, n], the rest from the first seed; None
    when the seeds were scored on different units (then they cannot share one resample of the test set)."""
    first = per_seed[0]
    if any(len(o["values"]) != len(first["values"]) or not np.array_equal(o["group"], first["group"])
           for o in per_seed[1:]):
        return None
    return {**first, "values": np.stack([o["values"] for o in per_seed])}


# Every interval of eval.json and the report is of one estimand (#21): the metric averaged over a run's seeds,
# as it would vary with other seeds and another test set: stats.bootstrap_interval's two-stage bootstrap.
# The evaluate stage writes it; the report reads it (report/significance.py, which also says it in words).
INTERVAL_KEYS = ("lo", "hi", "value", "n", "seeds", "seed_variation", "method")


def estimand_interval(o: dict[str, np.ndarray], metric: str, keep: Optional[np.ndarray] = None,
                      per_seed: Optional[list] = None) -> Optional[dict]:
    """The estimand's 95% interval from `stacked` outcomes (of the units where `keep`; None if none).
    `per_seed`, if given, receives each seed's own interval over the test examples, read off the same
    resamples (stats.bootstrap_interval's "per_seed"): no second bootstrap."""
    values, weights, group = o["values"], o["weights"], o["group"]
    if keep is not None:
        if not keep.any():
            return None
        values, weights, group = values[:, keep], weights[keep], group[keep]
    r = stats.bootstrap_interval(values, weights, group, n_boot=N_BOOT, transform=transform_for(metric))
    if per_seed is not None:
        per_seed.extend({"lo": lo, "hi": hi, "value": value, "n": r["n"]} for value, lo, hi in r["per_seed"])
    return {k: r[k] for k in INTERVAL_KEYS}


def estimand_intervals(o: dict[str, np.ndarray], metric: str, n_buckets: int) -> dict:
    """eval.json's overall_interval and per_bucket_interval (None where a bucket is empty), and each seed's
    own `interval` and `per_bucket_interval` over the test examples: {"run": {...}, "seeds": [{...}, ...]}."""
    overall_seeds: list = []
    overall = estimand_interval(o, metric, per_seed=overall_seeds)
    per_bucket, bucket_seeds = [], []
    for b in range(n_buckets):
        found: list = []
        per_bucket.append(estimand_interval(o, metric, o["bucket"] == b, per_seed=found))
        bucket_seeds.append(found or [None] * len(overall_seeds))
    seeds = [{"interval": {**iv, "method": "bootstrap over test examples (this seed)"},
              "per_bucket_interval": [found[k] for found in bucket_seeds]} for k, iv in enumerate(overall_seeds)]
    return {"run": {"overall_interval": overall, "per_bucket_interval": per_bucket}, "seeds": seeds}


def intervals_over_seeds(seeds: list[dict], metric: str, n_buckets: int) -> dict:
    """The estimand where there are no per-unit outcomes to resample (BLEU and chrF, which are corpus
    statistics; an eval.json whose examples/ are not on disk): each seed's own interval over the test set
    (sacreBLEU's bootstrap) combined with the seeds' spread (stats.interval_over_seeds). Reads eval.json's
    `seeds` (overall, per_bucket, interval, per_bucket_interval; chrf, chrf_interval for BLEU) and
    returns the fields it can fill: overall_interval, per_bucket_interval, chrf_interval."""
    out = {}
    keys = [("overall_interval", "overall", "interval")] + \
        ([("chrf_interval", "chrf", "chrf_interval")] if metric == "bleu" else [])
    for key, value, interval in keys:
        if all(s.get(value) is not None and s.get(interval) for s in seeds):
            out[key] = _over_seeds([s[value] for s in seeds], [s[interval] for s in seeds])
    if all(s.get("per_bucket_interval") for s in seeds):
        out["per_bucket_interval"] = [
            None if any(s["per_bucket"][i] is None or s["per_bucket_interval"][i] is None for s in seeds) else
            _over_seeds([s["per_bucket"][i] for s in seeds], [s["per_bucket_interval"][i] for s in seeds])
            for i in range(n_buckets)]
    return out


def _over_seeds(values: list[float], intervals: list[dict]) -> dict:
    """One seed: its own interval as it is (seed variation not measured); several: interval_over_seeds."""
    if len(values) == 1:
        return {**intervals[0], "seeds": 1, "seed_variation": False}
    return stats.interval_over_seeds(values, intervals)


def save_translations(directory: Path, seed: int, hyps: list[str], refs: list[str], srcs: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("hyp", hyps), ("ref", refs), ("src", srcs)):
        (directory / f"seed{seed}.{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
