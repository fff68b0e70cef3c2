"""Synthetic long-range tasks, generated locally, deterministically by seed (no download).

Every generator works in its own small vocabulary that starts after the five shared specials
(`<pad>`=0 `<unk>`=1 `<eos>`=2 `<sep>`=3 `<cls>`=4, see pipeline.data.tokenizers), so padding is 0
for every task. `tokens(name, cfg)` lists the string of every id (specials included).

* `mqar` — multi-query associative recall (Arora et al. 2023, "Zoology"). A sequence of length L
  starts with `num_pairs` key-value pairs `k1 v1 k2 v2 ...` (keys and values both drawn without
  replacement, as Zoology does, so no value is more frequent than another); every key is then queried
  exactly once, in random order, at distinct positions of the remaining L - 2*num_pairs (the query
  region); the other positions of the region are filler. Keys come from the first half of the `vocab`
  data tokens, values from the second half. target[t] = the value paired with the key ids[t] at each
  query position, -1 elsewhere. Options (the defaults are generator version 2's data, byte for byte):
  - `filler: blank` fills with the blank token `_`; `random` with tokens drawn uniformly from
    `filler_vocab` filler tokens `f0 f1 ...`. Zoology draws filler from the whole vocabulary; here it
    is disjoint from keys and values, so filler is never an unlabelled query nor a value the no-recall
    rule would count, and it is drawn last: the pairs, queries, targets and floor are blank filler's.
  - `query_gap: uniform` places the queries uniformly over the query region; `power_law` draws each
    query's gap g >= 1 after the last pair with weight g^(gap_power - 1), without replacement, as
    Zoology's `power_a` (0.01 there: most queries soon after the pairs, a few far; 1 = uniform).
    Zoology keeps queries on every other slot; here any slot of the region.
* `selcopy` — selective copying (Gu & Dao 2023, Mamba §4.1). The first L - num_copy positions are
  the noise token `.` with `num_copy` data tokens (from `vocab`) at random positions; the last
  num_copy positions are the marker `>`. target at the i-th marker = the i-th data token in order
  of position; -1 elsewhere. The inputs at output positions are markers, never the answers.
* `listops` — ListOps (Nangia & Bowman 2018; Long Range Arena): nested `[MAX`, `[MIN`, `[MED`,
  `[SM` (sum modulo 10) expressions over the digits 0-9, closed by `]`; the label is the value
  (10 classes). MED follows LRA: int(numpy.median) of the arguments. Operators take 2..max_args
  arguments and nest at most max_depth deep. Lengths are controlled: a split of length L holds
  expressions of L/2 < length <= L tokens (drawn uniformly, then rejection).

Targets (recall kinds) follow the causal convention: target[t] is what the model must output AT
position t having read ids[:t+1]; it is never ids[t+1] leaked into the input.

Length extrapolation: `extrapolate=[2, 4]` adds splits `test_2x`, `test_4x` generated at 2x and 4x
seq_len (MQAR keeps num_pairs, so queries sit further from their keys; selcopy keeps num_copy).
MQAR `scale_pairs=true` scales the pairs with the length instead, as Zoology's settings do (64 tokens
with 4 pairs, 128 with 8, 256 with 16): a sequence of length L holds num_pairs * L // seq_len pairs.

Lengths (MQAR): `train_lengths=[64, 128, 256]` makes train and val a mixture of those lengths (equal
shares, shuffled), as Zoology trains on several (length, pairs) settings; with extrapolate=[2, 4] at
seq_len 64 the test splits at 64, 128, 256 are then inside the training distribution.

Number of pairs (MQAR): `sweep_pairs=[2, 4, 16]` adds splits `test_2pairs`, ... at seq_len with that
many key-value pairs (and as many queries), for Zoology's accuracy-vs-pairs curve: a fixed-size state
must hold every pair, so recurrences lose accuracy as pairs grow. `train_pairs=[2, 4, 8, 16]` makes
the train and val splits a mixture of those pair counts (equal shares, rows shuffled), as Zoology
trains on a mixture of settings: a model trained at one count does not transfer to more pairs than
it saw (a Transformer trained at 4 pairs: 0.999 at 4, 0.60 at 8, 0.30 at 16), which would measure
that shift rather than the state's capacity. The test split keeps `num_pairs`.

Each split draws from its own stream `SeedSequence([seed, crc32(task), split index])`, so e.g.
changing n_train does not change the test set. Generation is vectorised numpy (ListOps: Python
recursion, ~1 s per 10k expressions of ~100 tokens).
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from pipeline.config import ConfigError

N_SPECIAL = 5  # <pad> <unk> <eos> <sep> <cls>
SPECIAL_NAMES = ("<pad>", "<unk>", "<eos>", "<sep>", "<cls>")
SPECIAL_IDS = {"pad": 0, "unk": 1, "eos": 2, "sep": 3, "cls": 4}
GENERATOR_VERSION = 2  # bump when a generator's output for the same parameters changes
KIND = {"mqar": "recall", "selcopy": "recall", "listops": "classify"}
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}  # test_{k}x uses 100 + k, test_{k}pairs 1000 + k
CHUNK_ROWS = 4096  # rows generated at once (bounds memory of the argsort-based sampling)


@dataclass
class Split:
    """One generated split. `ids` is a flat int32 array, `offsets` int64 [n + 1]."""

    ids: np.ndarray
    offsets: np.ndarray
    targets: Optional[np.ndarray] = None  # recall: int32 aligned with ids, -1 = no target
    labels: Optional[np.ndarray] = None  # classify: int64 [n]


def split_lengths(cfg: Any) -> dict[str, int]:
    """Split name -> generation length (the longest, for a mixture): train/val/test at seq_len (train/val:
    the longest of train_lengths when set), test_{k}x at k * seq_len, test_{k}pairs (MQAR) at seq_len."""
    out = {s: int(cfg.seq_len) for s in ("train", "val", "test")}
    if getattr(cfg, "train_lengths", None):
        out.update(train=max(int(n) for n in cfg.train_lengths), val=max(int(n) for n in cfg.train_lengths))
    out.update({f"test_{int(k)}x": int(k) * int(cfg.seq_len) for k in cfg.extrapolate})
    out.update({f"test_{int(k)}pairs": int(cfg.seq_len) for k in getattr(cfg, "sweep_pairs", None) or []})
    return out


def split_sizes(cfg: Any) -> dict[str, int]:
    return {split: int(cfg.n_train) if split == "train" else int(cfg.n_val) if split == "val" else int(cfg.n_test)
            for split in split_lengths(cfg)}


def split_pairs(cfg: Any, split: str) -> int:
    """MQAR: the number of key-value pairs of a split (num_pairs but in the pairs sweep, and in test_{k}x
    with scale_pairs)."""
    if split.endswith("pairs"):
        return int(split[len("test_"):-len("pairs")])
    if split.startswith("test_") and split.endswith("x"):
        return pairs_at(cfg, int(split[len("test_"):-1]) * int(cfg.seq_len))
    return int(cfg.num_pairs)


def pairs_at(cfg: Any, length: int) -> int:
    """MQAR: pairs in a sequence of `length` tokens: num_pairs, or with scale_pairs num_pairs * length //
    seq_len (at least 1)."""
    if not getattr(cfg, "scale_pairs", False):
        return int(cfg.num_pairs)
    return max(1, int(cfg.num_pairs) * int(length) // int(cfg.seq_len))


def _rng(name: str, cfg: Any, split: str) -> np.random.Generator:
    index = SPLIT_INDEX.get(split)
    if index is None and split.endswith("pairs"):
        index = 1000 + split_pairs(cfg, split)
    elif index is None:  # test_{k}x
        index = 100 + int(split[len("test_"):-1])
    return np.random.default_rng(np.random.SeedSequence([int(cfg.seed), zlib.crc32(name.encode()), index]))


def _distinct_sorted(rng: np.random.Generator, n: int, population: int, k: int) -> np.ndarray:
    """[n, k] sorted distinct integers from range(population) per row."""
    return np.sort(np.argsort(rng.random((n, population)), axis=1)[:, :k], axis=1)


def _weighted_distinct_sorted(rng: np.random.Generator, n: int, weights: np.ndarray, k: int) -> np.ndarray:
    """[n, k] sorted distinct integers from range(len(weights)) per row, as numpy's choice(replace=False,
    p=weights): the k largest keys u ** (1 / w) (Efraimidis & Spirakis 2006), compared as log(u) / w."""
    keys = np.log(rng.random((n, len(weights)))) / weights
    return np.sort(np.argsort(-keys, axis=1)[:, :k], axis=1)


# ----------------------------------------------------------------------------- vocabularies


def tokens(name: str, cfg: Any) -> list[str]:
    """String of each id of the task's vocabulary (index = id), specials first."""
    if name == "mqar":
        half = int(cfg.vocab) // 2
        filler = [f"f{i}" for i in range(int(cfg.filler_vocab))] if getattr(cfg, "filler", "blank") == "random" else []
        return [*SPECIAL_NAMES, "_", *(f"k{i}" for i in range(half)), *(f"v{i}" for i in range(half)), *filler]
    if name == "selcopy":
        return [*SPECIAL_NAMES, ".", ">", *(f"d{i}" for i in range(int(cfg.vocab)))]
    if name == "listops":
        return [*SPECIAL_NAMES, *(str(d) for d in range(10)), *LISTOPS_OPS, "]"]
    raise ConfigError(f"unknown synthetic task '{name}'; known: {', '.join(KIND)}")


def no_recall_accuracy(ids: np.ndarray, targets: np.ndarray, offsets: np.ndarray) -> float:
    """MQAR's floor, measured on a generated split (rows ids[offsets[i]:offsets[i + 1]]): the expected
    accuracy of the best rule that reads which values a sequence holds but cannot tell which key each
    belongs to, i.e. answer the value seen most often before the query (ties split evenly; nothing seen
    yet scores 0). A value is any token that is some query's target in the split, so filler (its own
    tokens) never counts. Values drawn with replacement put it above 1/num_pairs (0.28 at 4 pairs, 0.125
    at 16 in generator version 1); without replacement it is 1/num_pairs."""
    values = np.unique(targets[targets >= 0])
    if not len(values):
        return 0.0
    is_value = np.isin(ids, values)
    total, queries = 0.0, 0
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        tgt = targets[start:end]
        asked = np.flatnonzero(tgt >= 0)
        if not len(asked):
            continue
        queries += len(asked)
        where = np.flatnonzero(is_value[start:end])
        kinds, which = np.unique(ids[start:end][where], return_inverse=True)
        if not len(kinds):
            continue
        before = (where[None, :] < asked[:, None]).astype(np.int64)  # [queries, value positions]
        counts = before @ (which[:, None] == np.arange(len(kinds))[None, :]).astype(np.int64)  # [queries, kinds]
        top = counts.max(axis=1)
        ties = (counts == top[:, None]).sum(axis=1)
        slot = np.minimum(np.searchsorted(kinds, tgt[asked]), len(kinds) - 1)
        hit = (kinds[slot] == tgt[asked]) & (counts[np.arange(len(asked)), slot] == top) & (top > 0)
        total += float((hit / ties).sum())
    return round(total / max(queries, 1), 4)


def chance_accuracy(name: str, cfg: Any) -> float:
    """The accuracy a model reaches without solving the task (per target / per example).

    MQAR: answering any value that occurs in the sequence is right 1/num_pairs of the time, a floor a
    model reaches without recall (Arora et al. 2023), far above the 2/vocab of guessing blindly."""
    if name == "mqar":
        return round(1.0 / int(cfg.num_pairs), 4)
    if name == "selcopy":
        return round(1.0 / int(cfg.vocab), 4)
    return 0.1  # listops: 10 values; the majority-class baseline is in meta too


# ----------------------------------------------------------------------------- MQAR

MQAR_BLANK = N_SPECIAL
MQAR_FILLERS = ("blank", "random")
MQAR_QUERY_GAPS = ("uniform", "power_law")


def mqar(rng: np.random.Generator, n: int, seq_len: int, num_pairs: int, vocab: int, filler: str = "blank",
         filler_vocab: int = 0, query_gap: str = "uniform", gap_power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """ids, targets: int32 [n, seq_len]. The default options draw exactly what generator version 2 drew."""
    half = vocab // 2
    key0, val0 = N_SPECIAL + 1, N_SPECIAL + 1 + half
    if num_pairs > half:
        raise ConfigError(f"mqar: task.synthetic.num_pairs={num_pairs} exceeds the {half} keys of vocab={vocab}")
    if seq_len < 3 * num_pairs:
        raise ConfigError(f"mqar: task.synthetic.seq_len={seq_len} is too short for num_pairs={num_pairs} "
                          f"(needs >= {3 * num_pairs}: the pairs, then one query per key)")
    d = num_pairs
    rows = np.arange(n)[:, None]
    keys = np.argsort(rng.random((n, half)), axis=1)[:, :d]  # distinct within a sequence
    values = np.argsort(rng.random((n, half)), axis=1)[:, :d]  # distinct too: no value is a better guess
    ids = np.full((n, seq_len), MQAR_BLANK, dtype=np.int32)
    ids[:, 0:2 * d:2] = key0 + keys
    ids[:, 1:2 * d:2] = val0 + values
    if query_gap == "power_law":  # gap g = 1, 2, ... after the last pair, weight g^(gap_power - 1)
        gap_weights = np.arange(1, seq_len - 2 * d + 1, dtype=np.float64) ** (float(gap_power) - 1.0)
        qpos = 2 * d + _weighted_distinct_sorted(rng, n, gap_weights, d)
    else:
        qpos = 2 * d + _distinct_sorted(rng, n, seq_len - 2 * d, d)
    order = np.argsort(rng.random((n, d)), axis=1)  # which pair each query asks for
    ids[rows, qpos] = key0 + keys[rows, order]
    targets = np.full((n, seq_len), -1, dtype=np.int32)
    targets[rows, qpos] = val0 + values[rows, order]
    if filler == "random":  # drawn last: the pairs, queries and targets are those of blank filler
        blank = ids == MQAR_BLANK
        ids[blank] = (val0 + half + rng.integers(0, filler_vocab, size=(n, seq_len)))[blank]
    return ids, targets


def mqar_options(cfg: Any) -> dict:
    """The filler and query-gap keyword arguments of `mqar` from a SyntheticConfig."""
    options = {"filler": str(getattr(cfg, "filler", "blank")), "filler_vocab": int(getattr(cfg, "filler_vocab", 0)),
               "query_gap": str(getattr(cfg, "query_gap", "uniform")), "gap_power": float(getattr(cfg, "gap_power", 1.0))}
    for key, valid in (("filler", MQAR_FILLERS), ("query_gap", MQAR_QUERY_GAPS)):
        if options[key] not in valid:
            raise ConfigError(f"task.synthetic.{key}='{options[key]}' is not valid; choose one of: {', '.join(valid)}")
    return options


def mqar_mixture(rng: np.random.Generator, n: int, seq_len: int, pair_counts: list[int],
                 vocab: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """n MQAR rows, an equal share at each pair count of `pair_counts`, in shuffled order."""
    shares = np.array_split(np.arange(n), len(pair_counts))
    parts = [mqar(rng, len(share), seq_len, k, vocab, **options) for share, k in zip(shares, pair_counts)]
    order = rng.permutation(n)
    return np.concatenate([p[0] for p in parts])[order], np.concatenate([p[1] for p in parts])[order]


def mqar_length_mixture(rng: np.random.Generator, n: int, settings: list[tuple[int, int]],
                        vocab: int, **options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n MQAR rows, an equal share at each (length, pairs) of `settings`, in shuffled order; returns the
    flat ids and targets and each row's length."""
    shares = np.array_split(np.arange(n), len(settings))
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for share, (length, pairs) in zip(shares, settings):
        ids, targets = mqar(rng, len(share), length, pairs, vocab, **options)
        rows += list(zip(ids, targets))
    rows = [rows[i] for i in rng.permutation(n)]
    lengths = np.array([len(r[0]) for r in rows], dtype=np.int64)
    if not rows:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), lengths
    return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]), lengths


# ----------------------------------------------------------------------------- selective copying

SELCOPY_NOISE, SELCOPY_MARKER = N_SPECIAL, N_SPECIAL + 1


def selcopy(rng: np.random.Generator, n: int, seq_len: int, num_copy: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """ids, targets: int32 [n, seq_len]."""
    prefix = seq_len - num_copy
    if prefix < num_copy:
        raise ConfigError(f"selcopy: task.synthetic.seq_len={seq_len} must be >= 2 * num_copy={2 * num_copy}")
    rows = np.arange(n)[:, None]
    data = (SELCOPY_MARKER + 1 + rng.integers(0, vocab, (n, num_copy))).astype(np.int32)
    pos = _distinct_sorted(rng, n, prefix, num_copy)
    ids = np.full((n, seq_len), SELCOPY_NOISE, dtype=np.int32)
    ids[rows, pos] = data
    ids[:, prefix:] = SELCOPY_MARKER
    targets = np.full((n, seq_len), -1, dtype=np.int32)
    targets[:, prefix:] = data
    return ids, targets


# ----------------------------------------------------------------------------- ListOps

LISTOPS_OPS = ("[MAX", "[MIN", "[MED", "[SM")
DIGIT0 = N_SPECIAL
OP0 = DIGIT0 + 10
CLOSE = OP0 + len(LISTOPS_OPS)


def _apply(op: int, args: list[int]) -> int:
    if op == 0:
        return max(args)
    if op == 1:
        return min(args)
    if op == 2:  # as in LRA, int(numpy.median(args)): the mean of the two middle values, floored
        s = sorted(args)
        return (s[(len(s) - 1) // 2] + s[len(s) // 2]) // 2
    return sum(args) % 10


def _listops_tree(r: random.Random, budget: int, depth: int, max_depth: int, max_args: int,
                  out: list[int]) -> int:
    """Append an expression of at most `budget` tokens to `out`; return its value."""
    if budget < 4 or depth >= max_depth:  # an operator needs >= 2 arguments: >= 4 tokens
        value = int(r.random() * 10)  # r.random() is ~3x faster than randrange
        out.append(DIGIT0 + value)
        return value
    inner = budget - 2
    k = 2 + int(r.random() * (min(max_args, inner) - 1))  # uniform in 2..min(max_args, inner)
    cuts = sorted(r.sample(range(1, inner), k - 1))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, inner])]
    op = int(r.random() * len(LISTOPS_OPS))
    out.append(OP0 + op)
    values = [_listops_tree(r, part, depth + 1, max_depth, max_args, out) for part in parts]
    out.append(CLOSE)
    return _apply(op, values)


def listops(rng: np.random.Generator, n: int, max_len: int, max_depth: int, max_args: int) -> tuple[list[list[int]], np.ndarray]:
    """n expressions with max_len/2 < length <= max_len tokens; returns (token lists, labels)."""
    lo = max_len // 2 + 1
    if lo < 4 or max_args < 2:
        raise ConfigError(f"listops: task.synthetic.seq_len={max_len} must be >= 8 and max_args >= 2")
    r = random.Random(int(rng.integers(2 ** 63)))
    seqs, labels, tries = [], [], 0
    while len(seqs) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ConfigError(f"listops: cannot reach length > {lo - 1} with max_depth={max_depth}, "
                              f"max_args={max_args}; raise them or lower task.synthetic.seq_len")
        out: list[int] = []
        value = _listops_tree(r, r.randint(lo, max_len), 0, max_depth, max_args, out)
        if len(out) >= lo:
            seqs.append(out)
            labels.append(value)
    return seqs, np.asarray(labels, dtype=np.int64)


def to_text(ids: Any, name: str, cfg: Any) -> str:
    """Space-separated token strings (e.g. a ListOps expression `[MAX 2 [MIN 4 7 ] ]`)."""
    vocab = tokens(name, cfg)
    return " ".join(vocab[int(i)] for i in ids)


# ----------------------------------------------------------------------------- splits


def generate(name: str, cfg: Any, split: str) -> Split:
    """Generate one split of the synthetic task `name` with parameters `cfg` (a SyntheticConfig)."""
    if name not in KIND:
        raise ConfigError(f"unknown synthetic task '{name}'; known: {', '.join(KIND)}")
    mqar_only = {"sweep_pairs": [], "train_pairs": [], "train_lengths": [], "scale_pairs": False, "filler": "blank",
                 "query_gap": "uniform"}  # MQAR's settings, at values that leave other tasks as they are
    for key, unset in mqar_only.items():
        if name != "mqar" and getattr(cfg, key, unset) not in (unset, None):
            raise ConfigError(f"task.synthetic.{key} is MQAR's; remove it from the '{name}' task")
    if getattr(cfg, "train_pairs", None) and getattr(cfg, "train_lengths", None):
        raise ConfigError("mqar: task.synthetic.train_pairs and train_lengths both mix the training data; set one "
                          "(train_lengths with scale_pairs=true scales the pairs with each length)")
    if split.endswith("pairs"):
        k, half = split_pairs(cfg, split), int(cfg.vocab) // 2
        if not 1 <= k <= min(half, int(cfg.seq_len) // 3):
            raise ConfigError(f"mqar: task.synthetic.sweep_pairs holds {k}; each must be in 1..{min(half, int(cfg.seq_len) // 3)} "
                              f"(at most vocab/2 = {half} keys, and 3 tokens per pair in seq_len={cfg.seq_len})")
    length, n = split_lengths(cfg)[split], split_sizes(cfg)[split]
    if name == "mqar" and split.endswith("x") and split_pairs(cfg, split) > int(cfg.vocab) // 2:
        raise ConfigError(f"mqar: task.synthetic.scale_pairs puts {split_pairs(cfg, split)} pairs in {split} ({length} "
                          f"tokens), more than the {int(cfg.vocab) // 2} keys of vocab={cfg.vocab}; raise "
                          f"task.synthetic.vocab to at least {2 * split_pairs(cfg, split)}")
    rng = _rng(name, cfg, split)
    if name == "listops":
        seqs, labels = listops(rng, n, length, int(cfg.max_depth), int(cfg.max_args))
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        ids = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(lengths.sum()))
        return Split(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), labels=labels)
    options = mqar_options(cfg) if name == "mqar" else {}
    mixed = split in ("train", "val")
    settings = [(int(n_), pairs_at(cfg, int(n_))) for n_ in getattr(cfg, "train_lengths", None) or []] if mixed else []
    for n_, k in settings:
        if not 1 <= k <= min(int(cfg.vocab) // 2, n_ // 3):
            raise ConfigError(f"mqar: task.synthetic.train_lengths holds {n_}, which takes {k} pairs; a length must "
                              f"hold 1..{min(int(cfg.vocab) // 2, n_ // 3)} pairs (vocab/2 keys, 3 tokens per pair)")
    ids_parts, tgt_parts, lengths = [], [], []
    for start in range(0, n, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, n - start)
        row_lengths = np.full(rows, length, dtype=np.int64)
        if name == "mqar" and settings:
            ids, tgt, row_lengths = mqar_length_mixture(rng, rows, settings, int(cfg.vocab), **options)
        elif name == "mqar" and mixed and getattr(cfg, "train_pairs", None):
            ids, tgt = mqar_mixture(rng, rows, length, [int(k) for k in cfg.train_pairs], int(cfg.vocab), **options)
        elif name == "mqar":
            ids, tgt = mqar(rng, rows, length, split_pairs(cfg, split), int(cfg.vocab), **options)
        else:
            ids, tgt = selcopy(rng, rows, length, int(cfg.num_copy), int(cfg.vocab))
        ids_parts.append(ids.ravel())
        tgt_parts.append(tgt.ravel())
        lengths.append(row_lengths)
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
    targets = np.concatenate(tgt_parts) if tgt_parts else np.zeros(0, np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64) if lengths \
        else np.zeros(1, np.int64)
    return Split(ids, offsets, targets=targets)
