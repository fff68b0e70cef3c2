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
