"""Stage `tokenize`: raw corpus of a task -> splits, tokenizer, token-id arrays and meta.json.

Output in `<paths.tokenized>/<task>/` (written atomically):

    tokenizer.json
    {split}.ids.npy      int32, all examples' ids concatenated
    {split}.offsets.npy  int64 [n_examples + 1]; example i is ids[offsets[i]:offsets[i+1]]
    {split}.labels.npy   int64 [n_examples] (classification only; names in meta["labels"])
    meta.json

A language-modelling split is ONE example: the whole split as a single stream, each line's tokens
followed by `<eos>` (the Mikolov convention), so offsets is [0, n_tokens]. Its length statistics
are over lines (sentences incl. `<eos>`), which is what is informative about the text.
Classification lengths are whole documents; truncation to `task.max_len` happens at batching.
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ROOT, ConfigError
from pipeline.data.fetch import atomic_dir
from pipeline.data.tokenizers import encode_batch, save_tokenizer, special_ids, train_tokenizer

SCHEMA = 1
SPLITS = ("train", "val", "test")
LM_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}  # PTB names: valid -> val


def main(cfg: Any) -> None:
    tokenize_task(cfg.task, ROOT / cfg.paths.raw / cfg.task.name, ROOT / cfg.paths.tokenized / cfg.task.name)


def tokenize_task(task: Any, raw_dir: Path, out_dir: Path) -> dict:
    """Tokenize the raw corpus in `raw_dir` for `task` (a TaskConfig) into `out_dir`; returns meta."""
    source_json = raw_dir / "source.json"
    if not source_json.exists():
        raise ConfigError(f"{raw_dir}: no raw data (source.json missing); run "
                          f"`python -m pipeline download task={task.name}` first")
    if task.kind == "lm":
        texts, labels, label_names = read_lm_splits(raw_dir), None, None
    elif task.kind == "classify":
        texts, labels, label_names = read_classification(raw_dir, task)
    else:
        raise ConfigError(f"task.kind='{task.kind}' is not valid; choose lm or classify")

    tok = train_tokenizer(task.tokenizer, texts["train"], vocab_size=task.vocab_size,
                          min_frequency=task.min_frequency, lowercase=task.lowercase)
    specials = special_ids(tok)
    meta: dict[str, Any] = {
        "schema": SCHEMA, "task": task.name, "kind": task.kind, "corpus": task.corpus,
        "tokenizer": task.tokenizer, "vocab_size": tok.get_vocab_size(), "special": specials,
    }
    if label_names is not None:
        meta["labels"] = label_names
    meta["splits"] = {}

    with atomic_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp / "tokenizer.json")
        ids_by_split = {}
        for split in SPLITS:
            docs = encode_batch(tok, texts[split])
            if task.kind == "lm":
                docs = [d + [specials["eos"]] for d in docs]
            lengths = np.array([len(d) for d in docs], dtype=np.int64)
            ids = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(lengths.sum()))
            offsets = np.array([0, len(ids)]) if task.kind == "lm" else np.concatenate([[0], np.cumsum(lengths)])
            np.save(tmp / f"{split}.ids.npy", ids)
            np.save(tmp / f"{split}.offsets.npy", offsets.astype(np.int64))
            if labels is not None:
                np.save(tmp / f"{split}.labels.npy", np.asarray(labels[split], dtype=np.int64))
            meta["splits"][split] = split_stats(lengths, n_examples=len(offsets) - 1)
            if task.kind == "lm":
                meta["splits"][split]["lines"] = len(docs)
            ids_by_split[split] = ids
        if task.kind == "lm":
            meta["unigram_ppl_test"] = unigram_perplexity(ids_by_split["train"], ids_by_split["test"],
                                                          meta["vocab_size"])
        else:
            meta["majority_accuracy_test"] = majority_accuracy(labels["train"], labels["test"])
        meta["source"] = json.loads(source_json.read_text(encoding="utf-8"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


# ----------------------------------------------------------------------------- reading raw data


def read_lm_splits(raw_dir: Path) -> dict[str, list[str]]:
    """One string per non-empty line of each official split file."""
    texts = {}
    for split, name in LM_FILES.items():
        path = raw_dir / name
        if not path.exists():
            raise ConfigError(f"{path}: missing; language-modelling corpora need train.txt, valid.txt "
                              "and test.txt (re-run the download stage)")
        texts[split] = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return texts


def read_classification(raw_dir: Path, task: Any) -> tuple[dict[str, list[str]], dict[str, list[int]], list[str]]:
    """Texts and integer labels per split from `examples.csv` (label,text[,split]).

    Label ids follow the sorted label names. Without a `split` column, a stratified split by
    `task.val_fraction` / `task.test_fraction` / `task.split_seed`."""
    path = raw_dir / "examples.csv"
    if not path.exists():
        raise ConfigError(f"{path}: missing; classification corpora need examples.csv (label,text)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"label", "text"} <= set(rows[0]):
        raise ConfigError(f"{path}: expected columns label,text")
    label_names = sorted({r["label"] for r in rows})
    label_id = {name: i for i, name in enumerate(label_names)}
    y = np.array([label_id[r["label"]] for r in rows], dtype=np.int64)
    if "split" in rows[0]:
        split_of = np.array([{"valid": "val"}.get(r["split"], r["split"]) for r in rows])
    else:
        split_of = stratified_split(y, task.val_fraction, task.test_fraction, task.split_seed)
    texts, labels = {}, {}
    for split in SPLITS:
        idx = np.flatnonzero(split_of == split)
        if len(idx) == 0:
            raise ConfigError(f"{path}: the '{split}' split is empty (task.val_fraction/test_fraction too small?)")
        texts[split] = [rows[i]["text"] for i in idx]
        labels[split] = y[idx].tolist()
    return texts, labels, label_names


def stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per example; each class is split in the given proportions (rounded)."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise ConfigError(f"task.val_fraction={val_fraction}, task.test_fraction={test_fraction}: "
                          "both must be > 0 with a sum below 1")
    rng = np.random.default_rng(seed)
    split_of = np.full(len(y), "train", dtype=object)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test, n_val = round(len(idx) * test_fraction), round(len(idx) * val_fraction)
        split_of[idx[:n_test]] = "test"
        split_of[idx[n_test:n_test + n_val]] = "val"
    return split_of


# ----------------------------------------------------------------------------- statistics


def length_histogram(lengths: np.ndarray, first: int = 16) -> dict[str, int]:
    """Counts in buckets 1-16, 17-32, 33-64, ... up to the bucket holding the longest."""
    hist, lo, hi = {}, 1, first
    top = int(lengths.max()) if len(lengths) else 0
    while True:
        hist[f"{lo}-{hi}"] = int(((lengths >= lo) & (lengths <= hi)).sum())
        if hi >= top:
            return hist
        lo, hi = hi + 1, hi * 2


def split_stats(lengths: np.ndarray, n_examples: int) -> dict[str, Any]:
    return {
        "examples": n_examples,
        "tokens": int(lengths.sum()),
        "max_len": int(lengths.max()),
        "mean_len": round(float(lengths.mean()), 2),
        "length_histogram": length_histogram(lengths),
    }


def unigram_perplexity(train_ids: np.ndarray, test_ids: np.ndarray, vocab_size: int) -> float:
    """Test perplexity of an add-one-smoothed unigram model fitted on train: a chance baseline."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts) - math.log(counts.sum())
    return round(float(np.exp(-log_p[test_ids].mean())), 2)


def majority_accuracy(train_labels: list[int], test_labels: list[int]) -> float:
    majority = Counter(train_labels).most_common(1)[0][0]
    return round(float(np.mean(np.asarray(test_labels) == majority)), 4)
