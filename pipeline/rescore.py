"""Re-score a published report from its per-example outcomes alone (#21.4):

    python -m pipeline rescore DEST

DEST is what `python -m pipeline publish` wrote: the report's summary.csv, buckets.csv and extrapolation.csv,
and runs/<task>/<model>/{eval.json, examples/}. Every metric is recomputed from the outcomes: a seed's
metric is transform(sum(w·v) / sum(w)) overall, per length bucket and per extra test split (perplexity =
exp of the mean NLL; accuracy the mean). A translation's BLEU and chrF come from its hypotheses and
references with sacreBLEU, per length bucket too where the folder has the sentences' source lengths
(examples/source_lengths.txt.gz; a folder published without them is not checked for per-bucket BLEU).
eval.json contributes only what ran (task, model, metric, buckets, seeds),
its numbers are replaced. The intervals are recomputed from the outcomes by the code the evaluate stage
writes them with (significance.one_estimand with recompute), the "vs next" verdicts by the report's
(tables.build_tables), and every value, interval end and verdict is compared with the published tables:
exit 0 when all agree (to 1e-6 relative), 1 naming each that does not.

The context-use table (context_use.csv) is recomputed from the probe's outcomes (seed<k>.context.npz) by the
report's code and compared the same way; a folder published without it is not checked for it.
"""
from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import outcomes, stats
from pipeline.artifacts import ArtifactError
from pipeline.report import significance
from pipeline.report.collect import collect
from pipeline.report.tables import build_tables

RTOL = 1e-6
COMPARED = {"summary": (["task", "model"], ["value", "lo", "hi", "chrf", "chrf_lo", "chrf_hi", "vs_next"]),
            "buckets": (["task", "model", "bucket"], ["value", "lo", "hi"]),
            "extrapolation": (["task", "model", "sweep", "split"], ["value", "lo", "hi"]),
            "context_use": (["task", "model", "position_hi"], ["ppl", "gain_from_previous", "gain_lo", "gain_hi",
                                                               "used_up_to", "max_position", "paired"])}


def _metric(o: dict, metric: str, keep=None) -> float | None:
    w, v = o["weights"].astype(np.float64), o["values"].astype(np.float64)
    if keep is not None:
        w, v = w[keep], v[keep]
    if not w.sum() > 0:
        return None
    mean = float((w * v).sum() / w.sum())
    return float(np.exp(mean)) if metric == "ppl" else mean


def _examples(r: dict) -> Path:
    return Path(r["_path"]).parent / "examples"


def _load(r: dict, seed: int, split: str = "") -> dict:
    path = _examples(r) / f"seed{seed}{'.' + split if split else ''}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: a published report needs every seed's outcomes "
                                f"(`python -m pipeline publish`)")
    return outcomes.load(path)


def _lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()


def recompute(r: dict) -> None:
    """Replace the run's per-seed numbers by those its outcomes give (in place)."""
    metric = r["metric"]
    for s in r["seeds"]:
        if metric == "bleu":
            _translation(r, s)
            continue
        o = _load(r, s["seed"])
        s["overall"] = _metric(o, metric)
        s["per_bucket"] = [_metric(o, metric, o["bucket"] == b) for b in range(len(r["buckets"]["edges"]))]
    for split, entry in (r.get("extrapolation") or {}).items():
        entry["overall"] = float(np.mean([_metric(_load(r, s["seed"], split), metric) for s in r["seeds"]]))
    if metric == "bleu":
        r["chrf"] = float(np.mean([s["chrf"] for s in r["seeds"]]))


def _translation(r: dict, s: dict) -> None:
    from sacrebleu.metrics import BLEU, CHRF

    hyps, refs = (_lines(_examples(r) / f"seed{s['seed']}.{name}.txt.gz") for name in ("hyp", "ref"))
    s["overall"] = BLEU().corpus_score(hyps, [refs]).score
    s["chrf"] = CHRF().corpus_score(hyps, [refs]).score
    s["interval"] = {k: v for k, v in stats.bleu_interval(hyps, refs, seed=s["seed"]).items() if k in ("lo", "hi")}
    s["chrf_interval"] = {k: v for k, v in stats.chrf_interval(hyps, refs, seed=s["seed"]).items() if k in ("lo", "hi")}
    lengths = _examples(r) / "source_lengths.txt.gz"
    if not lengths.exists():
        return
    # bucket i holds lengths in (edges[i-1], edges[i]], the last one everything longer: buckets.index's rule
    edges = r["buckets"]["edges"]
    bucket = np.minimum(np.searchsorted(edges, np.array([int(n) for n in _lines(lengths)]), side="left"),
                        len(edges) - 1)
    if len(bucket) != len(hyps):
        raise ArtifactError(f"{lengths} has {len(bucket)} lines for {len(hyps)} test sentences")
    s["per_bucket"], s["per_bucket_interval"] = [], []
    for b in range(len(edges)):
        members = np.flatnonzero(bucket == b)
        if not len(members):
            s["per_bucket"].append(None)
            s["per_bucket_interval"].append(None)
            continue
        h, t = [hyps[i] for i in members], [refs[i] for i in members]
        s["per_bucket"].append(BLEU().corpus_score(h, [t]).score)
        s["per_bucket_interval"].append({k: v for k, v in stats.bleu_interval(h, t, seed=s["seed"]).items()
                                         if k in ("lo", "hi")})


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return (a if a == a else "") == (b if b == b else "")  # NaN (an empty CSV cell) reads as ""
    if a is None or b is None or (math.isnan(a) and math.isnan(b)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9)


def rescore(dest: Path) -> tuple[int, list[str]]:
    """(numbers compared, differences) between DEST's tables and those recomputed from DEST's outcomes."""
    results = collect(dest / "runs")
    bleu_by_bucket = {(r["task"], r["model"]): (_examples(r) / "source_lengths.txt.gz").exists() for r in results}
    for r in results:
        recompute(r)
        significance.one_estimand(r, recompute=True)  # eval.json's intervals are not re-scored numbers
    tables = build_tables(results)
    compared, differences = 0, []
    for name, (keys, columns) in COMPARED.items():
        if name == "context_use" and not (dest / f"{name}.csv").exists():
            continue  # published before context use was (docs/cpu)
        published = pd.read_csv(dest / f"{name}.csv")
        if published.empty:
            continue
        mine = tables[name].set_index(keys)
        for row in published.to_dict("records"):
            key = tuple(row[k] for k in keys)
            if name == "buckets" and row["metric"] == "bleu" and not bleu_by_bucket.get(key[:2]):
                continue  # published without the sentences' source lengths: per-bucket BLEU not re-scorable
            if key not in mine.index:
                differences.append(f"{name}.csv {key}: no such run in {dest / 'runs'}")
                continue
            ours = mine.loc[key]
            for column in columns:
                if column not in published.columns:
                    continue
                compared += 1
                if not _same(row[column], ours[column]):
                    differences.append(f"{name}.csv {'/'.join(map(str, key))} {column}: published {row[column]}, "
                                       f"re-scored {ours[column]}")
    return compared, differences


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "summary.csv").exists() or not (Path(argv[0]) / "runs").is_dir():
        print("rescore: give a folder written by `python -m pipeline publish` (summary.csv and runs/ in it), "
              "e.g. `python -m pipeline rescore docs/cpu`", file=sys.stderr)
        return 2
    try:
        compared, differences = rescore(Path(argv[0]))
    except (FileNotFoundError, ArtifactError) as e:
        print(f"rescore: {e}", file=sys.stderr)
        return 2
    for line in differences:
        print(f"  differs: {line}")
    print(f"[rescore] {argv[0]}: {compared} published numbers and verdicts re-scored from the outcomes, "
          f"{len(differences)} differ")
    return 1 if differences else 0
