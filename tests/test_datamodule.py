"""Bucketed batching, masks, DDP sharding and determinism of the shared data module."""
import numpy as np
import pytest
import torch

from pipeline.buckets import edges, index, labels
from pipeline.data.datamodule import BucketBatchSampler, Collate


def lengths(n=1000, seed=0):
    return np.random.default_rng(seed).integers(1, 300, size=n)


def test_buckets_are_powers_of_two_and_cover_every_length():
    e = edges(100, 16)
    assert e == [16, 32, 64, 128]
    assert labels(e) == ["1-16", "17-32", "33-64", "65-128"]
    idx = index(torch.tensor([1, 16, 17, 32, 33, 128, 5000]), e)
    assert idx.tolist() == [0, 0, 1, 1, 2, 3, 3]


def test_training_batches_cover_each_example_once_and_limit_padding():
    lens = lengths()
    sampler = BucketBatchSampler(lens, batch_size=16, shuffle=True, seed=3, pool=20)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lens)))
    padded = sum(len(b) * max(lens[b]) for b in batches)
    random_padded = sum(len(b) * max(lens[b]) for b in np.array_split(np.random.default_rng(0).permutation(len(lens)), len(batches)))
    assert padded < 0.6 * random_padded  # bucketing removes most of the padding


def test_shuffle_is_deterministic_per_seed_and_changes_with_epoch():
    lens = lengths()
    a = list(BucketBatchSampler(lens, 16, True, seed=1, pool=10))
    b = list(BucketBatchSampler(lens, 16, True, seed=1, pool=10))
    assert a == b
    s = BucketBatchSampler(lens, 16, True, seed=1, pool=10)
    s.set_epoch(1)
    assert list(s) != a


@pytest.mark.parametrize("n", [96, 100, 37])
def test_eval_shards_count_every_example_exactly_once_across_ranks(n):
    lens = lengths(n)
    shards = [list(BucketBatchSampler(lens, 16, False, 0, 10, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])  # equal step counts, or DDP collectives hang
    real = sorted(i for shard in shards for b in shard for i in b if i >= 0)
    assert real == list(range(n))  # negative ids are weight-0 duplicates


def test_train_shards_are_disjoint_and_equal_length():
    lens = lengths(1000)
    shards = [list(BucketBatchSampler(lens, 16, True, 0, 10, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    assert not set(i for b in shards[0] for i in b) & set(i for b in shards[1] for i in b)


def test_collate_pads_masks_and_truncates():
    items = [{"ids": torch.arange(1, 6), "length": 5, "label": 1, "weight": 1.0},
             {"ids": torch.arange(1, 3), "length": 2, "label": 0, "weight": 0.0}]
    batch = Collate(pad_id=0, kind="classify", max_len=4)(items)
    assert batch["ids"].tolist() == [[1, 2, 3, 4], [1, 2, 0, 0]]
    assert batch["mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["length"].tolist() == [5, 2]  # the true length, for bucketing by document length
    assert batch["weight"].tolist() == [1.0, 0.0]


def test_collate_tail_truncation_keeps_the_end_of_documents_only():
    items = [{"ids": torch.arange(1, 6), "length": 5, "label": 1, "weight": 1.0},
             {"ids": torch.arange(1, 3), "length": 2, "label": 0, "weight": 1.0}]
    batch = Collate(pad_id=0, kind="classify", max_len=3, tail=True)(items)
    assert batch["ids"].tolist() == [[3, 4, 5], [1, 2, 0]]  # right-padded as ever
    assert batch["length"].tolist() == [5, 2]
    translation = [{"ids": torch.arange(1, 6), "tgt": torch.arange(1, 6), "length": 5, "weight": 1.0}]
    assert Collate(pad_id=0, kind="translate", max_len=3, tail=True)(translation)["ids"].tolist() == [[1, 2, 3]]
