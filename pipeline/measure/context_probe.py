"""The same test tokens scored with different amounts of context: how much context a language model uses.

Perplexity by position within the test windows compares *different* tokens at each position, so with
a few hundred windows the token mix, not the context, decides the differences. Here every target token
of a fixed stretch of the test stream is scored once per context bucket (lo, hi] of the task's
log-spaced edges: windows of length hi at stride hi - lo, each scoring its positions lo+1..hi, tile the
stretch, so each token is predicted from between lo+1 and hi tokens of history. Differences between
buckets are then paired token by token (after Khandelwal et al. 2018, who truncate the context of
fixed targets). Units are grouped in blocks of BLOCK consecutive targets, the cluster the report's
bootstrap resamples (neighbouring tokens' losses are correlated).

Cost: about (2 · buckets) forward passes over `targets` tokens, small next to the test pass.
"""
from __future__ import annotations

import math

import numpy as np
import torch


BLOCK = 128
MAX_TARGETS = 16384  # paired per token: ~1% differences in NLL resolve (docs/results.md)


def probed_edges(edges: list[int], max_len: int) -> list[int]:
    """The buckets a model trained at max_len can be asked about: upper edges up to max_len."""
    return [e for e in edges if e <= max_len]


def target_count(stream_len: int, edges: list[int]) -> int:
    """Targets after the first edges[-1] tokens (every bucket needs that much history before them): a
    multiple of every bucket's stride and of BLOCK, so windows tile them exactly."""
    step = math.lcm(BLOCK, *(hi - lo for lo, hi in zip([0, *edges[:-1]], edges)))
    return max(0, min(MAX_TARGETS, stream_len - edges[-1] - 1) // step * step)


def windows(start: int, n_targets: int, lo: int, hi: int) -> np.ndarray:
    """First input index of each window of length hi whose positions lo+1..hi predict targets
    start .. start+n_targets-1 (target t is stream[t], predicted from the tokens before it)."""
    stride = hi - lo
    return start - lo - 1 + stride * np.arange(n_targets // stride)


@torch.no_grad()
def probe(module, stream, edges: list[int], max_len: int, batch_tokens: int = 16384) -> dict[str, np.ndarray] | None:
    """Per-token NLL of the same targets in every bucket, as outcomes (values, weights, bucket, group),
    or None when the token stream (the test split's: task_batch.test_stream) is too short to hold a target
    stretch. `module.per_example` scores a batch of windows as in training (its 4th output: the NLL at
    each input position)."""
    stream = torch.as_tensor(np.asarray(stream, dtype=np.int64))
    edges = probed_edges(edges, max_len)
    start = edges[-1] if edges else 0
    n = target_count(len(stream), edges) if edges else 0
    if n == 0:
        return None
    device = next(module.parameters()).device
    parts: dict[str, list[np.ndarray]] = {"values": [], "weights": [], "bucket": [], "group": []}
    for b, hi in enumerate(edges):
        lo = edges[b - 1] if b else 0
        firsts = windows(start, n, lo, hi)
        nll = []
        rows = max(1, batch_tokens // hi)
        for i in range(0, len(firsts), rows):
            index = torch.as_tensor(firsts[i:i + rows])[:, None] + torch.arange(hi + 1)
            window = stream[index].to(device)
            batch = {"ids": window, "mask": torch.ones_like(window, dtype=torch.bool),
                     "weight": torch.ones(len(window), device=device)}
            values = module.per_example(batch)[3]  # [rows, hi]: NLL at input positions 1..hi
            nll.append(values[:, lo:hi].reshape(-1).double().cpu())
        values = torch.cat(nll).numpy()
        assert len(values) == n
        parts["values"].append(values.astype(np.float32))
        parts["weights"].append(np.ones(n, dtype=np.float32))
        parts["bucket"].append(np.full(n, b, dtype=np.int16))
        parts["group"].append((np.arange(n) // BLOCK).astype(np.int32))
    return {k: np.concatenate(v) for k, v in parts.items()}
