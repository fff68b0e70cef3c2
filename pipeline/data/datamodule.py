"""SequenceData: the batches every model and task reads, for every stage. The train stage wraps it in
a LightningDataModule (pipeline/tasks/trainable.py `SequenceDataModule`); evaluate and measure read it
as it is, without importing Lightning.

Token ids live in memory-mapped .npy files written by the tokenize stage. Batches are formed by a
length-bucketed batch sampler (pools of `bucket_pool` batches sorted by length, so padding stays
small while order stays random), split across DDP ranks by batch. Evaluation pads the last rank's
share with weight-0 duplicates so every example is counted exactly once in synced metrics.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline import kinds, paths
from pipeline.artifacts import Meta
from pipeline.data import arrays
from pipeline.data.batching import pad_right
from pipeline.data.splits import SPLITS
from pipeline.kinds.base import TaskKind


def tokenized_dir(cfg: Any) -> Path:
    return paths.tokenized_dir(cfg)


def read_meta(cfg: Any) -> dict:
    rerun = f"`dvc repro tokenize@{cfg.task.name}` (or `python -m pipeline tokenize task={cfg.task.name}`)"
    return Meta.read(paths.tokenized_dir(cfg) / paths.META, rerun).to_dict()


class TokenizedSplit(Dataset):
    """Examples of one split. What an example spans and carries besides its ids is the task kind's
    business (`TaskKind.open_split` / `item`, pipeline/kinds/); e.g. an LM split is its token stream
    cut into windows of max_len + 1 tokens. `length` (what batches are grouped and bucketed by) is
    the document / source length.
    """

    def __init__(self, directory: Path, split: str, kind: TaskKind, max_len: int, limit: int | None = None,
                 meta: dict | None = None):
        self.kind = kind
        if meta is not None:  # checksums and token-id range against meta.json (once per process per file)
            arrays.verify_split(directory, split, meta)
        self.fields = kind.open_split(directory, split, max_len)
        self.ids = self.fields["ids"]
        if limit is not None:
            self.fields["starts"], self.fields["ends"] = self.fields["starts"][:limit], self.fields["ends"][:limit]
        self.starts, self.ends = self.fields["starts"], self.fields["ends"]
        self.lengths = (self.ends - self.starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        item = {"ids": _tensor(self.ids[self.starts[i]:self.ends[i]]), "length": int(self.lengths[i])}
        for key, value in self.kind.item(self.fields, i).items():
            item[key] = _tensor(value) if isinstance(value, np.ndarray) else value
        return item


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64))


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; a negative index -(i+1) marks a weight-0 duplicate of example i."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int, pool: int,
                 rank: int = 0, world_size: int = 1):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.pool, self.rank, self.world_size = seed, pool, rank, world_size
        self.epoch = 0
        self.resume = (-1, 0)  # (epoch, batches of it already trained on): skipped once, on resume

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
        if self.resume[0] == self.epoch:  # the order is a function of (seed, epoch): skip what was trained
            mine, self.resume = mine[self.resume[1]:], (-1, 0)
        return iter(mine)

    def __len__(self) -> int:
        n_batches = math.ceil(len(self.lengths) / self.batch_size)
        if self.shuffle:
            return n_batches // self.world_size or 1
        return math.ceil(n_batches / self.world_size)


class Collate:
    """Right-pads to the longest example in the batch; truncates sequences to `max_len` (None:
    never, as for length-extrapolation splits) where the kind truncates at all. `tail` keeps a
    document's last max_len tokens instead of its first (classification: labels do not move with
    tokens). The kind adds its own keys (labels, targets, target sides)."""

    def __init__(self, pad_id: int, kind: TaskKind | str, max_len: int | None, tail: bool = False):
        self.kind = kinds.get(kind) if isinstance(kind, str) else kind
        self.pad_id, self.max_len = pad_id, max_len
        self.tail = tail and self.kind.may_keep_tail

    def _cut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.kind.truncates(self.max_len):
            return x
        return x[-self.max_len:] if self.tail else x[: self.max_len]

    def __call__(self, items: list[dict]) -> dict:
        ids, mask = pad_right([self._cut(it["ids"]) for it in items], self.pad_id)
        batch = {"ids": ids, "mask": mask,
                 "length": torch.tensor([it["length"] for it in items]),
                 "weight": torch.tensor([it["weight"] for it in items], dtype=torch.float32)}
        batch.update(self.kind.collate(items, self._cut, self.pad_id))
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


class SequenceData:
    def __init__(self, cfg: Any, seed: int = 0):
        super().__init__()  # the LightningDataModule's, when trainable.SequenceDataModule mixes it in
        self.cfg, self.seed = cfg, seed
        self.meta = read_meta(cfg)
        self.kind = kinds.get(cfg.task.kind)
        self.directory = paths.tokenized_dir(cfg)
        self.splits: dict[str, TokenizedSplit] = {}
        self.test_split = "test"  # the evaluate stage points this at test_2x / test_4x in turn
        self.resume = (-1, 0)  # (epoch, batches trained) restored from a checkpoint (trainable.py)

    @property
    def extra_test_splits(self) -> list[str]:
        """Length-extrapolation test splits (e.g. test_2x, test_4x), evaluated without truncation."""
        return list(self.meta.get("extra_test_splits", []))

    def split(self, name: str) -> TokenizedSplit:
        if name not in self.splits:
            cfg = self.cfg
            limit = cfg.data.max_train_examples if name == "train" else cfg.data.max_eval_examples
            self.splits[name] = TokenizedSplit(self.directory, name, self.kind, cfg.task.max_len, limit,
                                                meta=self.meta)
        return self.splits[name]

    def setup(self, stage: str | None = None) -> None:
        for name in SPLITS:
            self.split(name)

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """Batches of `split`: shuffled and resumable (train) or every example once, sorted by length."""
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        data = self.split(split)
        sampler = BucketBatchSampler(data.lengths, self.cfg.data.batch_size if train else self.cfg.data.eval_batch_size,
                                     shuffle=train, seed=self.seed, pool=self.cfg.data.bucket_pool,
                                     rank=rank, world_size=world)
        collate = Collate(self.meta["special"]["pad"], self.kind,
                          None if split in self.extra_test_splits else self.cfg.task.max_len,
                          tail=self.cfg.task.truncate == "tail")
        if train:
            sampler.resume = self.resume
        return DataLoader(_Weighted(data), batch_sampler=sampler, num_workers=self.cfg.data.num_workers,
                          collate_fn=collate)
