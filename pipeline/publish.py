"""Publish a report together with what its numbers came from (#21.4):

    python -m pipeline publish DEST [runs=runs] [reports=reports]

DEST gets the report's quality tables (summary.csv, buckets.csv, extrapolation.csv, context_use.csv: what
`rescore` checks; the report.md and plots are published beside them as before) and, for every run in its
summary, runs/<task>/<model>/:

    eval.json                       what ran: task, model, metric and its direction, length buckets, seeds
    examples/seed<k>[.<split>].npz  evaluate's per-example outcomes (pipeline/outcomes.py), one row per test
                                    sequence and length bucket (below); <split> is an extra test split, or
                                    `context`: the context-use probe's (pipeline/measure/context_probe.py)
    examples/seed<k>.{hyp,ref,src}.txt.gz   a translation's hypotheses, references and sources (test order)
    examples/source_lengths.txt.gz          a translation's source length in tokens per test sentence (test
                                            order): what evaluate buckets sentences by, so that `rescore`
                                            can re-score per-bucket BLEU; read from the tokenized test split

Outcomes are collapsed to one row per (test sequence, length bucket): the weighted mean of its terms and the
sum of their weights. Every number the report computes from outcomes is a ratio of sums over whole sequences
(the bootstrap resamples sequences: stats._units collapses each group to the same two sums), so every mean,
interval and paired test is unchanged. PTB's 82k scored tokens per seed become ~1k rows. The context-use
table likewise sums each (block of consecutive targets, context bucket) before its bootstrap
(report/context_use.py _window_sums), so the probe's 98k rows per PTB seed become 768 (355 kB -> ~5 kB).

`python -m pipeline rescore DEST` (pipeline/rescore.py) recomputes the tables from DEST alone.
"""
from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import outcomes

TABLES = ("summary.csv", "buckets.csv", "extrapolation.csv", "context_use.csv")


def collapse(o: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per (group, bucket), in the order the rows first appear (the test order, so two models'
    files still pair row by row): value = sum(w·v) / sum(w), weight = sum(w)."""
    group, bucket = o["group"].astype(np.int64), o["bucket"].astype(np.int64)
    key = group * (int(bucket.max()) + 1) + bucket
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    w = o["weights"].astype(np.float64)
    weight = np.bincount(inverse, weights=w)
    value = np.bincount(inverse, weights=w * o["values"].astype(np.float64)) / weight
    order = np.argsort(first, kind="stable")
    return {"values": value[order], "weights": weight[order], "bucket": o["bucket"][first][order],
            "group": o["group"][first][order]}


def publish(dest: Path, runs: Path, reports: Path) -> list[Path]:
    """Copy the report's tables and the outcomes of every run in its summary.csv into dest."""
    summary = reports / "summary.csv"
    if not summary.exists():
        raise FileNotFoundError(f"{summary} does not exist: run the report first (`dvc repro report`)")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        if (reports / name).exists() and (reports / name).resolve() != (dest / name).resolve():
            shutil.copyfile(reports / name, dest / name)
            written.append(dest / name)
    for task, model in pd.read_csv(summary)[["task", "model"]].itertuples(index=False):
        src, out = runs / task / model, dest / "runs" / task / model
        if not (src / "examples").is_dir():
            raise FileNotFoundError(f"{src / 'examples'} does not exist: the per-example outcomes are evaluate's "
                                    f"output (`dvc pull` or `dvc repro evaluate@{model}-{task}`)")
        (out / "examples").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "eval.json", out / "eval.json")
        written.append(out / "eval.json")
        for path in sorted((src / "examples").iterdir()):
            if path.suffix == ".npz":
                outcomes.save(out / "examples" / path.name, collapse(outcomes.load(path)))
                written.append(out / "examples" / path.name)
            elif path.suffix == ".txt":
                target = out / "examples" / f"{path.name}.gz"
                target.write_bytes(gzip.compress(path.read_bytes(), mtime=0))  # same bytes for the same text
                written.append(target)
        evaluated = json.loads((src / "eval.json").read_text(encoding="utf-8"))
        if evaluated.get("metric") == "bleu":
            lengths = source_lengths(evaluated["config"])
            if lengths is None:
                print(f"publish: {task}/{model}: no tokenized test split here (`dvc repro tokenize@{task}`), so "
                      f"its per-bucket BLEU is published without the sentences' lengths and `rescore` cannot "
                      f"check it", file=sys.stderr)
                continue
            target = out / "examples" / "source_lengths.txt.gz"
            target.write_bytes(gzip.compress("".join(f"{n}\n" for n in lengths).encode(), mtime=0))
            written.append(target)
    return written


def source_lengths(config: dict) -> np.ndarray | None:
    """Source length of every test sentence, as evaluate's bleu_by_bucket buckets them (the test split's
    `lengths`, read from the tokenize stage's output for the run's config); None where that is not on disk."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.artifacts import ArtifactError
    from pipeline.data.datamodule import SequenceData

    try:
        return SequenceData(OmegaConf.create(config)).split("test").lengths
    except (FileNotFoundError, ArtifactError, OmegaConfBaseException):  # not tokenized here; an older eval.json
        return None


def main(argv: list[str]) -> int:
    args = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(args) != 1 or set(options) - {"runs", "reports"}:
        print("publish: give one destination folder, e.g. `python -m pipeline publish docs/cpu "
              "[runs=runs] [reports=reports]`", file=sys.stderr)
        return 2
    try:
        written = publish(Path(args[0]), Path(options.get("runs", "runs")), Path(options.get("reports", "reports")))
    except FileNotFoundError as e:
        print(f"publish: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in written)
    print(f"[publish] {len(written)} files, {size / 1e6:.2f} MB -> {args[0]} (check: python -m pipeline rescore {args[0]})")
    return 0
