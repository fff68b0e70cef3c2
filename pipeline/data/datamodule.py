"""SequenceDataModule: the one LightningDataModule every model and task reads from.

Token ids live in memory-mapped .npy files written by the tokenize stage. Batches are formed by a
length-bucketed batch sampler (pools of `bucket_pool` batches sorted by length, so padding stays
small while order stays random), split across DDP ranks by batch. Evaluation pads the last rank's
share with weight-0 duplicates so every example is counted exactly once in synced metrics.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.config import ROOT, Config, ConfigError

SPLITS = ("train", "val", "test")


def tokenized_dir(cfg: Config) -> Path:
    return ROOT / cfg.paths.tokenized / cfg.task.name


def read_meta(cfg: Config) -> dict:
    path = tokenized_dir(cfg) / "meta.json"
    if not path.exists():
        raise ConfigError(f"{path} is missing: run `dvc repro tokenize@{cfg.task.name}` "
                          f"(or `python -m pipeline tokenize task={cfg.task.name}`) first")
    return json.loads(path.read_text())


class TokenizedSplit(Dataset):
    """Examples of one split, by task kind:

    lm        the split's token stream cut into windows of max_len + 1 tokens (stride max_len), so
              every token but the first is predicted exactly once;
    classify  documents (`{split}.ids/offsets`) with `{split}.labels`;
    recall    sequences with aligned `{split}.targets` (-1 where nothing is to be predicted);
    translate source and target sequences (`{split}.src.*`, `{split}.tgt.*`).
    `length` (what batches are grouped and bucketed by) is the document / source length.
    """

    def __init__(self, directory: Path, split: str, kind: str, max_len: int, limit: int | None = None):
        self.kind = kind
        self.labels = self.targets = self.tgt = None
        if kind == "translate":
            self.ids, self.starts, self.ends = _ragged(directory, f"{split}.src")
            self.tgt, self.tgt_starts, self.tgt_ends = _ragged(directory, f"{split}.tgt")
        else:
            self.ids, self.starts, self.ends = _ragged(directory, split)
        if kind == "lm":
            n_tokens = int(self.ends[-1])
            self.starts = np.arange(0, max(n_tokens - 1, 1), max_len)
            self.ends = np.minimum(self.starts + max_len + 1, n_tokens)
        elif kind == "classify":
            self.labels = np.load(directory / f"{split}.labels.npy")
        elif kind == "recall":
            self.targets = np.load(directory / f"{split}.targets.npy", mmap_mode="r")
        if limit is not None:
            self.starts, self.ends = self.starts[:limit], self.ends[:limit]
        self.lengths = (self.ends - self.starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        span = slice(self.starts[i], self.ends[i])
        item = {"ids": _tensor(self.ids[span]), "length": int(self.lengths[i])}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        if self.targets is not None:
            item["targets"] = _tensor(self.targets[span])
        if self.tgt is not None:
            item["tgt"] = _tensor(self.tgt[self.tgt_starts[i]:self.tgt_ends[i]])
        return item


def _ragged(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = directory / f"{prefix}.ids.npy"
    if not path.exists():
        raise ConfigError(f"{path} is missing: re-run the tokenize stage for this task")
    offsets = np.load(directory / f"{prefix}.offsets.npy")
    return np.load(path, mmap_mode="r"), offsets[:-1], offsets[1:]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64))


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; a negative index -(i+1) marks a weight-0 duplicate of example i."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int, pool: int,
                 rank: int = 0, world_size: int = 1):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.pool, self.rank, self.world_size = seed, pool, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
            span = self.batch_size * self.pool
            chunks = [order[i:i + span] for i in range(0, n, span)]
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks])
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.shuffle:
            np.random.default_rng(self.seed + self.epoch + 1).shuffle(batches)
        return batches

    def __iter__(self):
        batches = self._batches()
        per_rank = math.ceil(len(batches) / self.world_size)
        if self.shuffle:
            # Training: every rank needs the same number of steps; drop the remainder.
            per_rank = len(batches) // self.world_size or 1
            mine = batches[self.rank::self.world_size][:per_rank]
        else:
            mine = batches[self.rank::self.world_size]
            while len(mine) < per_rank:  # pad with weight-0 copies (counted zero times)
                mine.append([-(i + 1) for i in batches[0]])
        return iter(mine)

    def __len__(self) -> int:
        n_batches = math.ceil(len(self.lengths) / self.batch_size)
        if self.shuffle:
            return n_batches // self.world_size or 1
        return math.ceil(n_batches / self.world_size)


def pad_right(seqs: list[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(x) for x in seqs))
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for row, x in enumerate(seqs):
        out[row, : len(x)] = x
        mask[row, : len(x)] = True
    return out, mask


class Collate:
    """Right-pads to the longest example in the batch; truncates documents / sources / targets to
    `max_len` (None: never, as for length-extrapolation splits). `tail` keeps a document's last
    max_len tokens instead of its first (classification only: labels do not move with tokens)."""

    def __init__(self, pad_id: int, kind: str, max_len: int | None, tail: bool = False):
        self.pad_id, self.kind, self.max_len = pad_id, kind, max_len
        self.tail = tail and kind == "classify"

    def _cut(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "lm" or self.max_len is None:
            return x
        return x[-self.max_len:] if self.tail else x[: self.max_len]

    def __call__(self, items: list[dict]) -> dict:
        ids, mask = pad_right([self._cut(it["ids"]) for it in items], self.pad_id)
        batch = {"ids": ids, "mask": mask,
                 "length": torch.tensor([it["length"] for it in items]),
                 "weight": torch.tensor([it["weight"] for it in items], dtype=torch.float32)}
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items])
        if "targets" in items[0]:
            batch["targets"] = pad_right([self._cut(it["targets"]) for it in items], -1)[0]
        if "tgt" in items[0]:
            batch["tgt"], batch["tgt_mask"] = pad_right([self._cut(it["tgt"]) for it in items], self.pad_id)
        return batch


class _Weighted(Dataset):
    """Resolves the sampler's negative indices into weight-0 duplicates."""

    def __init__(self, base: TokenizedSplit):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[-i - 1 if i < 0 else i]
        item["weight"] = 0.0 if i < 0 else 1.0
        return item


class SequenceDataModule(L.LightningDataModule):
    def __init__(self, cfg: Config, seed: int = 0):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.meta = read_meta(cfg)
        self.directory = tokenized_dir(cfg)
        self.splits: dict[str, TokenizedSplit] = {}
        self.test_split = "test"  # the evaluate stage points this at test_2x / test_4x in turn

    @property
    def extra_test_splits(self) -> list[str]:
        """Length-extrapolation test splits (e.g. test_2x, test_4x), evaluated without truncation."""
        return list(self.meta.get("extra_test_splits", []))

    def split(self, name: str) -> TokenizedSplit:
        if name not in self.splits:
            cfg = self.cfg
            limit = cfg.data.max_train_examples if name == "train" else cfg.data.max_eval_examples
            self.splits[name] = TokenizedSplit(self.directory, name, cfg.task.kind, cfg.task.max_len, limit)
        return self.splits[name]

    def setup(self, stage: str | None = None) -> None:
        for name in SPLITS:
            self.split(name)

    def loader(self, split: str, train: bool = False) -> DataLoader:
        return self._loader(split, train)

    def _loader(self, split: str, train: bool) -> DataLoader:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        data = self.split(split)
        sampler = BucketBatchSampler(data.lengths, self.cfg.data.batch_size if train else self.cfg.data.eval_batch_size,
                                     shuffle=train, seed=self.seed, pool=self.cfg.data.bucket_pool,
                                     rank=rank, world_size=world)
        return DataLoader(_Weighted(data), batch_sampler=sampler, num_workers=self.cfg.data.num_workers,
                          collate_fn=Collate(self.meta["special"]["pad"], self.cfg.task.kind,
                                             None if split in self.extra_test_splits else self.cfg.task.max_len,
                                             tail=self.cfg.task.truncate == "tail"))

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader(self.test_split, train=False)
