"""Batches of real test tokens at a chosen length, for the measurements made on a task's model
(FLOPs per token in evaluate; speed and memory in measure)."""
from __future__ import annotations

import math

import numpy as np
import torch

from pipeline import kinds, paths
from pipeline.artifacts import Meta
from pipeline.data.arrays import read_ragged, verify_split
from pipeline.schema import Config


def test_stream(cfg: Config) -> np.ndarray:
    """The test split's token ids (the kind says which field: translation reads the source side), memory-mapped;
    checked against meta.json first (checksums, id range), as the data module checks every split it opens."""
    directory, field = paths.tokenized_dir(cfg), kinds.get(cfg.task.kind).test_stream
    rerun = f"`dvc repro tokenize@{cfg.task.name}`"
    verify_split(directory, field.split(".")[0], Meta.read(directory / paths.META, rerun).to_dict())
    return read_ragged(directory, field)[0]


def task_batch(cfg: Config, stream: np.ndarray, length: int, batch_size: int, device) -> dict:
    """A batch of real test tokens, `length` long (LM: plus the target token), repeated as needed."""
    kind = kinds.get(cfg.task.kind)
    width = kind.input_width(length)
    need = batch_size * width
    reps = math.ceil(need / max(len(stream), 1))
    ids = torch.from_numpy(np.tile(np.asarray(stream[: min(len(stream), need)], dtype=np.int64), reps)[:need])
    ids = ids.view(batch_size, width).to(device)
    batch = {"ids": ids, "mask": torch.ones_like(ids, dtype=torch.bool),
             "length": torch.full((batch_size,), length, device=device),
             "weight": torch.ones(batch_size, device=device)}
    batch.update(kind.dummy_batch(ids, length, batch_size))
    return batch
