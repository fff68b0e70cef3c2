"""The context probe scores the same targets once per context bucket, each with a context inside the bucket."""
import numpy as np
import torch
from torch import nn

from pipeline.measure.context_probe import BLOCK, probe, target_count
from pipeline.report.context_use import context_use


class ContextEcho(nn.Module):
    """A 'language model' whose NLL at input position p of a window is 1000·p + the target token id:
    the probe's output then says exactly which token it scored and with how much context."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def per_example(self, batch):
        ids = batch["ids"]
        targets = ids[:, 1:].double()
        positions = torch.arange(1, targets.shape[1] + 1, dtype=torch.float64).expand_as(targets)
        nll = 1000 * positions + targets
        return nll, torch.ones_like(nll), torch.zeros_like(ids[:, 1:]), nll


def test_every_target_once_per_bucket_with_context_inside_the_bucket():
    edges = [16, 32, 64, 128]
    stream = torch.randint(0, 500, (5000,))
    out = probe(ContextEcho(), stream, edges, max_len=128, batch_tokens=700)
    n = target_count(len(stream), edges)
    assert n > 0 and n % 64 == 0 and n % BLOCK == 0
    targets = stream[128:128 + n].double().numpy()
    for b, hi in enumerate(edges):
        lo = edges[b - 1] if b else 0
        values = out["values"][out["bucket"] == b].astype(np.float64)
        assert len(values) == n
        context = values // 1000  # 1000·p + target (< 1000): p and the target, exactly
        assert np.array_equal(values - 1000 * context, targets)
        assert context.min() == lo + 1 and context.max() == hi
    # blocks of consecutive targets pair the buckets: the same group ids in every bucket
    groups = [out["group"][out["bucket"] == b] for b in range(len(edges))]
    assert all(np.array_equal(groups[0], g) for g in groups)


def test_buckets_beyond_the_trained_length_are_not_probed():
    out = probe(ContextEcho(), torch.randint(0, 50, (3000,)), [16, 32, 64, 128], max_len=64)
    assert set(np.unique(out["bucket"])) == {0, 1, 2}


def test_short_stream_gives_nothing():
    assert probe(ContextEcho(), torch.randint(0, 50, (100,)), [16, 32, 64], max_len=64) is None


def test_paired_gains_resolve_a_small_real_effect():
    """Per-token noise far larger than the effect (sd 1 nat vs a 0.05-nat gain from 16->32 tokens): the
    same-token pairing resolves it; a model whose loss does not depend on context shows no gain."""
    rng = np.random.default_rng(0)
    n, edges = 8192, [16, 32, 64]
    token_difficulty = rng.normal(5, 1, n)
    gain = {0: 0.0, 1: 0.05, 2: 0.05}
    for effect, expect in ((True, 32), (False, 16)):
        values = np.concatenate([token_difficulty - (gain[b] if effect else 0) + rng.normal(0, 0.05, n)
                                 for b in range(3)])
        o = {"values": values[None], "weights": np.ones(3 * n), "bucket": np.repeat(np.arange(3), n),
             "group": np.tile(np.arange(n) // BLOCK, 3)}
        result = context_use(o, edges)
        assert result["used_up_to"] == expect, result["steps"]
