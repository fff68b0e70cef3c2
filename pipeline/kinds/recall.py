"""Token-level recall (MQAR, selective copying): predict the target at marked positions.

Synthetic only (pipeline/data/synthetic.py writes the splits). On disk: `<split>.ids/offsets` and
`<split>.targets.npy`: int32, aligned with ids (same length, same offsets); -1 = no target at that
position; otherwise target[t] is the token the model must output AT position t, having read
ids[:t+1] (the answer is never in the input). Buckets count positions in the sequence, so the
length-extrapolation splits (2x, 4x the training length) fill the longer buckets.
"""
from __future__ import annotations

from pipeline.kinds.base import TaskKind, register_kind


@register_kind("recall")
class Recall(TaskKind):
    causal = True
    bucket_unit = "sequence position"
    module = "pipeline.tasks.recall:Recall"
    aligned = {"targets": -1}

    def dummy_batch(self, ids, length: int, batch_size: int) -> dict:
        return {"targets": ids.roll(1, dims=1)}  # every position scored: the worst case
