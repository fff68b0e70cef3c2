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


def intervals(outcomes: dict[str, np.ndarray], metric: str, n_buckets: int, seed: int = 0) -> dict:
    """95% bootstrap intervals over the test examples: overall and per bucket (None where empty)."""
    transform = transform_for(metric)

    def one(mask: Optional[np.ndarray]) -> Optional[dict]:
        o = outcomes if mask is None else {k: v[mask] for k, v in outcomes.items()}
        if not len(o["values"]):
            return None
        r = stats.bootstrap_interval(o["values"], o["weights"], o["group"], n_boot=N_BOOT, seed=seed,
                                     transform=transform)
        return {"lo": r["lo"], "hi": r["hi"], "value": r["value"], "n": r["n"], "n_units": r["n_units"]}

    overall = one(None)
    overall["method"] = f"bootstrap over test examples ({N_BOOT} resamples; whole sequences where tokens are scored)"
    return {"overall": overall, "per_bucket": [one(outcomes["bucket"] == b) for b in range(n_buckets)]}


def save_translations(directory: Path, seed: int, hyps: list[str], refs: list[str], srcs: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("hyp", hyps), ("ref", refs), ("src", srcs)):
        (directory / f"seed{seed}.{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
