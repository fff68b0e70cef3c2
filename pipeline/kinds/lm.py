"""Causal language modelling: a corpus of lines, read as one token stream per split.

On disk: `<split>.ids/offsets` with ONE example per split, the whole split as a single stream, each
line's tokens followed by `<eos>` (the Mikolov convention), so offsets is [0, n_tokens]. The data
module cuts it into windows of max_len + 1 tokens (stride max_len), so every token but the first is
predicted exactly once. Length statistics are over lines (incl. `<eos>`). Baseline: the test
perplexity of an add-one unigram model fitted on train. Buckets count context positions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import arrays
from pipeline.data.splits import SPLITS
from pipeline.data.tokenizers import encode_batch, special_ids, train_tokenizer
from pipeline.kinds.base import TaskKind, register_kind
from pipeline.schema import ConfigError

LM_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}  # PTB names: valid -> val


@register_kind("lm")
class LanguageModelling(TaskKind):
    causal = True
    bucket_unit = "context position"
    module = "pipeline.tasks.lm:LanguageModel"

    def tokenize(self, task: Any, raw_dir: Path, out_dir: Path, meta: dict) -> Any:
        texts = read_lm_splits(raw_dir)
        tok = train_tokenizer(task.tokenizer, texts["train"], vocab_size=task.vocab_size,
                              min_frequency=task.min_frequency, lowercase=task.lowercase)
        meta.update(vocab_size=tok.get_vocab_size(), special=special_ids(tok), splits={})
        streams = {}
        for split in SPLITS:
            docs = [d + [meta["special"]["eos"]] for d in encode_batch(tok, texts[split])]
            lengths = np.array([len(d) for d in docs], dtype=np.int64)
            ids = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(lengths.sum()))
            arrays.write_ragged(out_dir, split, ids, np.array([len(ids)]))
            meta["splits"][split] = {**arrays.split_stats(lengths, n_examples=1), "lines": len(docs)}
            streams[split] = ids
        meta["baseline"] = {"name": "unigram", "value": arrays.unigram_perplexity(
            streams["train"], streams["test"], meta["vocab_size"])}
        return tok

    def open_split(self, directory: Path, split: str, max_len: int) -> dict[str, Any]:
        fields = super().open_split(directory, split, max_len)
        n_tokens = int(fields["ends"][-1])
        fields["starts"] = np.arange(0, max(n_tokens - 1, 1), max_len)
        fields["ends"] = np.minimum(fields["starts"] + max_len + 1, n_tokens)
        return fields

    def truncates(self, max_len: int | None) -> bool:
        return False  # windows are cut when the split is opened

    def input_width(self, length: int) -> int:
        return length + 1

    # twice the perplexity of guessing uniformly over the vocabulary: worse than an untrained model,
    # so the run diverged (a short smoke run may still be far above the unigram baseline)
    DIVERGED_OVER_UNIFORM = 2.0

    def diverged(self, best_val: float | None, metric: str, meta: dict) -> str | None:
        limit = self.DIVERGED_OVER_UNIFORM * meta["vocab_size"]
        if best_val is not None and best_val > limit:
            return (f"best validation {metric} {best_val:.4g} is over {self.DIVERGED_OVER_UNIFORM:g}x the "
                    f"vocabulary size {meta['vocab_size']} (uniform guessing)")
        return super().diverged(best_val, metric, meta)


def read_lm_splits(raw_dir: Path) -> dict[str, list[str]]:
    """One string per non-empty line of each official split file."""
    texts = {}
    for split, name in LM_FILES.items():
        path = raw_dir / name
        if not path.exists():
            raise ConfigError(f"{path}: missing; language-modelling corpora need train.txt, valid.txt "
                              "and test.txt (re-run the download stage)")
        texts[split] = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return texts
