"""Causal language modelling; the metric is perplexity, bucketed by context position."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import buckets
from pipeline.tasks.base import TaskModule


class LanguageModel(TaskModule):
    metric_name = "ppl"
    higher_is_better = False

    def __init__(self, config: dict, meta: dict):
        super().__init__(config, meta)
        d, vocab = self.backbone.d_model, meta["vocab_size"]
        cutoffs = [c for c in self.cfg.task.adaptive_cutoffs if c < vocab - 1]
        if self.cfg.task.head == "adaptive" and cutoffs:  # a tiny vocabulary needs no adaptive softmax
            # Grave et al. 2017: frequent words get the full width, rare ones a narrow projection.
            self.head = nn.AdaptiveLogSoftmaxWithLoss(d, vocab, cutoffs=cutoffs, div_value=4.0)
        else:
            self.head = nn.Linear(d, vocab, bias=False)
            self.head.weight = self.embed.weight  # tied (Press & Wolf 2017)

    def make_bucket_edges(self) -> list[int]:
        return buckets.edges(self.cfg.task.max_len, self.cfg.data.bucket_min)

    def token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        if isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss):
            return -self.head(flat_h, flat_t).output.view_as(targets)
        return F.cross_entropy(self.head(flat_h), flat_t, reduction="none").view_as(targets)

    def per_example(self, batch):
        ids, mask = batch["ids"], batch["mask"]
        inputs, targets = ids[:, :-1], ids[:, 1:]
        in_mask, target_mask = mask[:, :-1], mask[:, 1:]
        hidden = self.encode(inputs, in_mask)
        nll = self.token_nll(hidden, targets.masked_fill(~target_mask, 0))
        weights = target_mask.float() * batch["weight"][:, None]
        positions = torch.arange(1, inputs.shape[1] + 1, device=ids.device).expand_as(targets)
        return nll, weights, buckets.index(positions, self.bucket_edges), nll

    def finalize(self, mean):
        return torch.exp(mean)
