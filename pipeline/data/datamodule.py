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
    """Examples of one split. LM streams are cut into windows of max_len + 1 tokens (stride max_len),
    so every token except the first is predicted exactly once."""

    def __init__(self, directory: Path, split: str, kind: str, max_len: int, limit: int | None = None):
        self.ids = np.load(directory / f"{split}.ids.npy", mmap_mode="r")
        offsets = np.load(directory / f"{split}.offsets.npy")
        self.kind = kind
        if kind == "lm":
            n_tokens = int(offsets[-1])
            starts = np.arange(0, max(n_tokens - 1, 1), max_len)
            self.starts = starts
            self.ends = np.minimum(starts + max_len + 1, n_tokens)
            self.labels = None
        else:
            self.starts, self.ends = offsets[:-1], offsets[1:]
            self.labels = np.load(directory / f"{split}.labels.npy")
        if limit is not None:
            self.starts, self.ends = self.starts[:limit], self.ends[:limit]
        self.lengths = (self.ends - self.starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        ids = torch.from_numpy(np.asarray(self.ids[self.starts[i]:self.ends[i]], dtype=np.int64))
        item = {"ids": ids, "length": int(self.lengths[i])}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item


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


class Collate:
    """Right-pads to the longest example in the batch; truncates classification documents."""

    def __init__(self, pad_id: int, kind: str, max_len: int):
        self.pad_id, self.kind, self.max_len = pad_id, kind, max_len

    def __call__(self, items: list[dict]) -> dict:
        seqs = [it["ids"] if self.kind == "lm" else it["ids"][: self.max_len] for it in items]
        width = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), width, dtype=torch.bool)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = s
            mask[row, : len(s)] = True
        batch = {"ids": ids, "mask": mask,
                 "length": torch.tensor([it["length"] for it in items]),
                 "weight": torch.tensor([it["weight"] for it in items], dtype=torch.float32)}
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items])
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

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        for split in SPLITS:
            if split not in self.splits:
                limit = cfg.data.max_train_examples if split == "train" else cfg.data.max_eval_examples
                self.splits[split] = TokenizedSplit(self.directory, split, cfg.task.kind, cfg.task.max_len, limit)

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        data = self.splits[split]
        sampler = BucketBatchSampler(data.lengths, self.cfg.data.batch_size if train else self.cfg.data.eval_batch_size,
                                     shuffle=train, seed=self.seed, pool=self.cfg.data.bucket_pool,
                                     rank=rank, world_size=world)
        return DataLoader(_Weighted(data), batch_sampler=sampler, num_workers=self.cfg.data.num_workers,
                          collate_fn=Collate(self.meta["special"]["pad"], self.cfg.task.kind, self.cfg.task.max_len))

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)
