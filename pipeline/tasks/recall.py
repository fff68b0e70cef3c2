"""Token-level recall (MQAR, selective copying): predict the target at marked positions.

Accuracy is counted over target positions only and bucketed by position in the sequence, so the
length-extrapolation splits (2x, 4x the training length) fill the longer buckets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import buckets
from pipeline.tasks.base import TaskModule


class Recall(TaskModule):
    metric_name = "acc"
    higher_is_better = True

    def __init__(self, config: dict, meta: dict):
        super().__init__(config, meta)
        self.head = nn.Linear(self.backbone.d_model, meta["vocab_size"])

    def make_bucket_edges(self) -> list[int]:
        longest = max(s["max_len"] for s in self.meta["splits"].values())
        return buckets.edges(max(longest, self.cfg.task.max_len), self.cfg.data.bucket_min)

    def per_example(self, batch):
        ids, mask, targets = batch["ids"], batch["mask"], batch["targets"]
        logits = self.head(self.encode(ids, mask))
        has_target = targets >= 0
        safe = targets.clamp(min=0)
        loss = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")
        correct = (logits.argmax(-1) == safe).float()
        weights = has_target.float() * batch["weight"][:, None]
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device).expand_as(targets)
        return loss, weights, buckets.index(positions, self.bucket_edges), correct
