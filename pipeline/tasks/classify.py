"""Sequence classification; the metric is accuracy, bucketed by the document length the model saw
(tokens after truncation to task.max_len: a 4,000-token review cut to 256 is a 256-token example)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import buckets
from pipeline.tasks.base import TaskModule


class Classifier(TaskModule):
    metric_name = "acc"
    higher_is_better = True

    def __init__(self, config: dict, meta: dict):
        super().__init__(config, meta)
        self.head = nn.Sequential(nn.Dropout(self.cfg.model.dropout), nn.Linear(self.backbone.d_model, len(meta["labels"])))

    def make_bucket_edges(self) -> list[int]:
        # test documents are cut to max_len at batching; longer extrapolation splits (never cut) land
        # in the last bucket, and only their overall metric is reported
        return buckets.edges(self.cfg.task.max_len, self.cfg.data.bucket_min)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.task.pooling == "last":
            last = mask.sum(1).clamp(min=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.cfg.task.pooling == "max":  # max over time (Kim 2014)
            return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.encode(ids, mask), mask))

    def per_example(self, batch):
        logits = self.logits(batch["ids"], batch["mask"])
        loss = F.cross_entropy(logits, batch["label"], reduction="none")
        correct = (logits.argmax(-1) == batch["label"]).float()
        seen = batch["mask"].sum(1)
        return loss, batch["weight"], buckets.index(seen, self.bucket_edges), correct
