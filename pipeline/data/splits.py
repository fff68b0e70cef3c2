"""Assigning examples to train / val / test where a corpus has no official split.

Every function returns the split name per example ("train" | "val" | "test") or a mask, seeded by
task.split_seed, so the same corpus and seed always give the same split.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.schema import ConfigError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"valid": "val", "validation": "val"}  # official split names in corpora


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


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out `fraction` of each class (rounded)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"task.val_fraction={fraction}: must be in (0, 1) to carve val out of train")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        mask[idx[:round(len(idx) * fraction)]] = True
    return mask


def grouped_split(groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per example, keeping each group whole: groups in seeded random order fill test
    until it holds >= test_fraction of the examples, then val likewise; the rest is train."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise ConfigError(f"task.val_fraction={val_fraction}, task.test_fraction={test_fraction}: "
                          "both must be > 0 with a sum below 1")
    names, inverse, counts = np.unique(np.asarray(groups, dtype=object), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(groups)
    group_split = np.full(len(names), "train", dtype=object)
    filled = {"test": 0, "val": 0}
    target = {"test": test_fraction * n, "val": val_fraction * n}
    current = "test"
    for g in order:
        if current == "test" and filled["test"] >= target["test"]:
            current = "val"
        if current == "val" and filled["val"] >= target["val"]:
            break
        group_split[g] = current
        filled[current] += counts[g]
    return group_split[inverse]


def normalise_text(text: str) -> str:
    """The key two texts are duplicates under: case-folded, runs of whitespace as one space."""
    return " ".join(text.casefold().split())


def first_occurrences(texts: Sequence[str]) -> np.ndarray:
    """Boolean mask keeping the first of every group of texts equal under normalise_text (a duplicate
    with another label is dropped too: the first label wins)."""
    seen: set[str] = set()
    keep = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        key = normalise_text(text)
        if key not in seen:
            seen.add(key)
            keep[i] = True
    return keep


def keep_repeats_in_train(texts: Sequence[str], split_of: np.ndarray) -> tuple[np.ndarray, int]:
    """Moves every val/test example whose normalised text also occurs in another split to train, so a
    repeated text (a verse repeated in another chapter) sits on one side of the split only. Returns
    the new split names and how many examples moved."""
    keys = [normalise_text(t) for t in texts]
    splits_of_key: dict[str, set] = {}
    for key, split in zip(keys, split_of):
        splits_of_key.setdefault(key, set()).add(split)
    moved = np.array([split != "train" and len(splits_of_key[key]) > 1 for key, split in zip(keys, split_of)],
                     dtype=bool)
    out = split_of.copy()
    out[moved] = "train"
    return out, int(moved.sum())


def cross_split_repeats(texts: Sequence[str], split_of: np.ndarray) -> dict[str, int]:
    """Per val/test split, how many of its examples' normalised texts also occur in train (for official
    splits, which are kept as published and only counted)."""
    train = {normalise_text(t) for t, s in zip(texts, split_of) if s == "train"}
    return {split: int(sum(normalise_text(t) in train for t, s in zip(texts, split_of) if s == split))
            for split in SPLITS if split != "train"}
