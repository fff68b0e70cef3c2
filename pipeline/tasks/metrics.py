"""A weighted mean kept per length bucket, as a torchmetrics Metric so DDP sync sums it exactly."""
from __future__ import annotations

import torch
from torchmetrics import Metric


class BucketedMean(Metric):
    full_state_update = False

    def __init__(self, n_buckets: int):
        super().__init__()
        self.n_buckets = n_buckets
        self.add_state("total", default=torch.zeros(n_buckets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(n_buckets, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, bucket: torch.Tensor, weight: torch.Tensor) -> None:
        values, bucket, weight = values.flatten().double(), bucket.flatten(), weight.flatten().double()
        self.total.index_add_(0, bucket, values * weight)
        self.count.index_add_(0, bucket, weight)

    def compute(self) -> dict[str, torch.Tensor]:
        per_bucket = self.total / self.count.clamp(min=1e-12)
        overall = self.total.sum() / self.count.sum().clamp(min=1e-12)
        return {"overall": overall, "per_bucket": per_bucket, "count": self.count}
