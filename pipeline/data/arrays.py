"""The on-disk format of tokenized splits, written and read only here.

A ragged field `<prefix>` is two files: `<prefix>.ids.npy` (int32, all examples concatenated) and
`<prefix>.offsets.npy` (int64 [n_examples + 1]; example i = ids[offsets[i]:offsets[i+1]]). A split
is `<split>` (one sequence per example) or, for kinds with several sides, `<split>.<side>`
(translation: `test.src`, `test.tgt`). Per-example scalars are `<split>.<name>.npy` (labels), and
per-position arrays aligned with the ids are `<split>.<name>.npy` with the same offsets (targets).
Also the length statistics that meta.json records per split, and the chance baselines.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.data.tokenizers import encode_batch
from pipeline.schema import ConfigError

ENCODE_CHUNK = 50_000  # sentences encoded at once (bounds memory on WMT-sized corpora)


def encode_flat(tok: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 flat, lengths int64) of `texts`, encoded in chunks."""
    id_parts, len_parts = [], []
    for start in range(0, len(texts), ENCODE_CHUNK):
        docs = encode_batch(tok, texts[start:start + ENCODE_CHUNK])
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        id_parts.append(np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(lengths.sum())))
        len_parts.append(lengths)
    if not id_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(id_parts), np.concatenate(len_parts)


def write_ragged(directory: Path, prefix: str, ids: np.ndarray, lengths: np.ndarray) -> None:
    np.save(directory / f"{prefix}.ids.npy", ids.astype(np.int32, copy=False))
    np.save(directory / f"{prefix}.offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def read_ragged(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids memory-mapped, starts, ends) of a ragged field; a missing file names the stage to re-run."""
    path = directory / f"{prefix}.ids.npy"
    rerun = f"re-run the tokenize stage (`dvc repro tokenize@{directory.name}`)"
    if not path.exists():
        raise ConfigError(f"{path} is missing: {rerun}")
    offsets = load_array(directory / f"{prefix}.offsets.npy", rerun)
    ids = load_array(path, rerun, mmap_mode="r")
    if len(offsets) < 1 or offsets[-1] != len(ids):
        raise ConfigError(f"{path}: {len(ids)} ids but its offsets end at {offsets[-1] if len(offsets) else None}: {rerun}")
    return ids, offsets[:-1], offsets[1:]


def load_array(path: Path, rerun: str, mmap_mode: str | None = None) -> np.ndarray:
    """np.load that names the file and the stage to re-run when it is missing, truncated or not .npy."""
    try:
        return np.load(path, mmap_mode=mmap_mode)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: {rerun}") from None
    except (ValueError, OSError, EOFError) as e:  # e.g. "mmap length is greater than file size"
        raise ConfigError(f"{path} is corrupt ({e}): {rerun}") from None


# ----------------------------------------------------------------------------- integrity

HASH = "blake2b"
_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest: hashed once per process


def file_digest(path: Path) -> str:
    """`blake2b:<hex>` of a file's bytes (about 1 GB/s: hashing a split costs milliseconds to a second)."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{HASH}:{h.hexdigest()}"


def checksums(directory: Path) -> dict[str, str]:
    """{file name: digest} of every array file in `directory` (what the tokenize stage records in meta.json)."""
    return {p.name: file_digest(p) for p in sorted(directory.glob("*.npy"))}


def verify_split(directory: Path, split: str, meta: dict) -> None:
    """Check the files of `split` against meta.json before they are used: each file's checksum (when
    meta records one; an older meta.json without checksums has nothing to check) and every token id
    in [0, vocab_size). Raises ArtifactError naming the file and the stage to re-run."""
    from pipeline.artifacts import ArtifactError

    rerun = f"re-run the tokenize stage (`dvc repro tokenize@{directory.name}`)"
    recorded = meta.get("checksums") or {}
    prefix = f"{split}."
    for name, digest in sorted(recorded.items()):
        if not name.startswith(prefix):
            continue
        path = directory / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ArtifactError(f"{path} is missing: {rerun}") from None
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if _VERIFIED.get(key) != digest:
            actual = file_digest(path)
            if actual != digest:
                raise ArtifactError(f"{path} does not match the checksum meta.json recorded for it "
                                    f"(changed after tokenizing): {rerun}")
            _VERIFIED[key] = digest
    vocab_size = meta.get("vocab_size")
    if vocab_size is None:
        return
    for path in sorted(directory.glob(f"{split}.*ids.npy")):  # <split>.ids.npy, <split>.<side>.ids.npy
        ids = load_array(path, rerun, mmap_mode="r")
        if len(ids) and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
            bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
            raise ArtifactError(f"{path} holds token id {bad}, outside meta.json's vocabulary "
                                f"[0, {vocab_size}): {rerun}")


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
