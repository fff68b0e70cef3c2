"""A task kind that seqarena does not ship: per-token tagging. The whole kind is this one module
(data plug-in + TaskModule); tests/test_kind_plugin.py drops it into a copy of the repository
as pipeline/kinds/tagging.py, with one task YAML, and runs tokenize -> train -> evaluate -> report.

Raw data: `tagged.txt`, one sentence per line, tokens as word/TAG. On disk: `<split>.ids/offsets`
(the words) and `<split>.tags.npy`, aligned with the ids (per position, like recall's targets).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import buckets
from pipeline.data import arrays
from pipeline.data.tokenizers import encode_batch, special_ids, train_tokenizer
from pipeline.kinds.base import TaskKind, register_kind
from pipeline.tasks.base import TaskModule

SPLIT_OF_LINE = ("train",) * 8 + ("val", "test")  # line i goes to SPLIT_OF_LINE[i % 10]


@register_kind("tagging")
class Tagging(TaskKind):
    causal = False  # a tagger may read the whole sentence
    bucket_unit = "token position"
    module = "pipeline.kinds.tagging:Tagger"
    aligned = {"tags": -1}

    def tokenize(self, task: Any, raw_dir: Path, out_dir: Path, meta: dict) -> Any:
        lines = (raw_dir / "tagged.txt").read_text(encoding="utf-8").splitlines()
        pairs = [[tuple(t.rsplit("/", 1)) for t in line.split()] for line in lines if line.strip()]
        tag_names = sorted({tag for sent in pairs for _, tag in sent})
        words = {s: [] for s in ("train", "val", "test")}
        tags = {s: [] for s in ("train", "val", "test")}
        for i, sent in enumerate(pairs):
            words[SPLIT_OF_LINE[i % 10]].append([w for w, _ in sent])
            tags[SPLIT_OF_LINE[i % 10]].append([tag_names.index(t) for _, t in sent])
        tok = train_tokenizer("word", [" ".join(w) for w in words["train"]], vocab_size=task.vocab_size)
        meta.update(vocab_size=tok.get_vocab_size(), special=special_ids(tok), labels=tag_names, splits={})
        for split in words:
            # one id per word: the tags stay aligned (unknown words map to <unk>)
            ids = [[(enc[0] if enc else meta["special"]["unk"]) for enc in encode_batch(tok, sent)] for sent in words[split]]
            lengths = np.array([len(x) for x in ids], dtype=np.int64)
            arrays.write_ragged(out_dir, split, np.concatenate(ids).astype(np.int32), lengths)
            np.save(out_dir / f"{split}.tags.npy", np.concatenate(tags[split]).astype(np.int32))
            meta["splits"][split] = arrays.split_stats(lengths, n_examples=len(ids))
        counts = np.bincount(np.concatenate(tags["train"]), minlength=len(tag_names))
        majority = float(np.mean(np.concatenate(tags["test"]) == counts.argmax()))
        meta["baseline"] = {"name": "majority tag", "value": round(majority, 4)}
        return tok

    def dummy_batch(self, ids, length: int, batch_size: int) -> dict:
        return {"tags": torch.zeros_like(ids)}


class Tagger(TaskModule):
    metric_name = "acc"
    higher_is_better = True

    def __init__(self, config: dict, meta: dict):
        super().__init__(config, meta)
        self.head = nn.Linear(self.backbone.d_model, len(meta["labels"]))

    def make_bucket_edges(self) -> list[int]:
        longest = max(s["max_len"] for s in self.meta["splits"].values())
        return buckets.edges(max(longest, self.cfg.task.max_len), self.cfg.data.bucket_min)

    def per_example(self, batch):
        ids, mask, tags = batch["ids"], batch["mask"], batch["tags"]
        logits = self.head(self.encode(ids, mask))
        has_tag = tags >= 0
        loss = F.cross_entropy(logits.transpose(1, 2), tags.clamp(min=0), reduction="none")
        correct = (logits.argmax(-1) == tags.clamp(min=0)).float()
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device).expand_as(tags)
        return loss, has_tag.float() * batch["weight"][:, None], buckets.index(positions, self.bucket_edges), correct
