"""A weighted mean kept per length bucket: float64 sums of value x weight and of weight per bucket.

`BucketSums` is the plain accumulator the evaluate stage scores a test split with (one process, no
torchmetrics to import). Training validates with pipeline/tasks/trainable.py's `BucketedMean`, a
torchmetrics Metric over the same sums (`add` / `mean`), so DDP sync adds them up exactly.
"""
from __future__ import annotations

import torch


def add(total: torch.Tensor, count: torch.Tensor, values: torch.Tensor, bucket: torch.Tensor,
        weight: torch.Tensor) -> None:
    values, bucket, weight = values.flatten().double(), bucket.flatten(), weight.flatten().double()
    total.index_add_(0, bucket, values * weight)
    count.index_add_(0, bucket, weight)


def mean(total: torch.Tensor, count: torch.Tensor) -> dict[str, torch.Tensor]:
    per_bucket = total / count.clamp(min=1e-12)
    overall = total.sum() / count.sum().clamp(min=1e-12)
    return {"overall": overall, "per_bucket": per_bucket, "count": count}


class BucketSums:
    def __init__(self, n_buckets: int, device: torch.device | str = "cpu"):
        self.total = torch.zeros(n_buckets, dtype=torch.float64, device=device)
        self.count = torch.zeros(n_buckets, dtype=torch.float64, device=device)

    def update(self, values: torch.Tensor, bucket: torch.Tensor, weight: torch.Tensor) -> None:
        add(self.total, self.count, values, bucket, weight)

    def compute(self) -> dict[str, torch.Tensor]:
        return mean(self.total, self.count)
