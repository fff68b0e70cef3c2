"""The one definition of sequence-length buckets, shared by evaluation, benchmark and report.

Bucket i covers lengths (edges[i-1], edges[i]]; the first is (0, smallest]; edges grow by powers
of two until they cover `max_len`. LM buckets count context positions (1-based), classification
buckets count document tokens.
"""
from __future__ import annotations


def edges(max_len: int, smallest: int = 16) -> list[int]:
    out = [smallest]
    while out[-1] < max_len:
        out.append(out[-1] * 2)
    return out


def labels(bucket_edges: list[int]) -> list[str]:
    lows = [1] + [e + 1 for e in bucket_edges[:-1]]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, bucket_edges)]


def index(lengths, bucket_edges: list[int]):
    """Bucket index of each length (a tensor); lengths beyond the last edge fall in the last bucket."""
    import torch  # here, so that stages reading only edges and labels stay torch-free

    boundaries = torch.tensor(bucket_edges, device=lengths.device, dtype=lengths.dtype)
    return torch.bucketize(lengths.contiguous(), boundaries).clamp(max=len(bucket_edges) - 1)
