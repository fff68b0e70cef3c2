"""`TaskKind`: what a task kind must say about itself, with the defaults most kinds share.

A plug-in is imported by tokenize, the data module, evaluate, the grid and the config check, so it
imports numpy at most at module level; its model class (torch) is named by `module` ("pkg.mod:Class")
and imported only by the stages that load or train a model.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from pipeline.data import arrays

_KINDS: dict[str, "TaskKind"] = {}


def register_kind(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _KINDS:
            raise ValueError(f"task kind '{name}' registered twice ({type(_KINDS[name]).__name__} and {cls.__name__})")
        cls.name = name
        _KINDS[name] = cls()
        return cls

    return wrap


def registered() -> dict[str, "TaskKind"]:
    return _KINDS


class TaskKind:
    name: str = ""
    causal: bool = True  # its models read left to right (LM, recall, decoding)
    encoder_decoder: bool = False  # served by encoder-decoder models too (registered with @register_seq2seq)
    bucket_unit: str = ""  # what a length bucket counts, shown in eval.json and the report
    module: str = ""  # "package.module:Class" of its model (a TaskModule; trainable() makes it a LightningModule)
    # Per-position arrays stored beside the ids and aligned with them, and the value padding them
    # (recall: {"targets": -1}); collated like the ids.
    aligned: dict[str, int] = {}
    # `task.truncate: tail` may keep a sequence's last tokens (true where one label covers the whole
    # sequence; position-aligned targets would be cut apart from their inputs)
    may_keep_tail: bool = False
    test_stream: str = "test"  # the ragged field whose ids feed speed / FLOPs measurements

    def bucket_label(self, task: Any, meta: dict) -> str:
        """What a length bucket counts, as eval.json and the report's table header say it."""
        return self.bucket_unit

    def cut_label(self, cut: Optional[int], examples: int, what: str, kept: str, max_len: int) -> str:
        """The bucket unit, and how many test inputs truncation shortened: '<unit> (k of n test <what>
        cut to their <kept> L tokens)'; the unit alone when none was."""
        if not cut:
            return self.bucket_unit
        return f"{self.bucket_unit} ({cut} of {examples} test {what} cut to their {kept} {max_len} tokens)"

    # -- tokenize: raw corpus -> <split>.* arrays + the meta fields of this kind
    def tokenize(self, task: Any, raw_dir: Path, out_dir: Path, meta: dict) -> Any:
        """Writes every split into `out_dir`, fills `meta` (vocab_size, special, splits, baseline, ...)
        and returns the trained tokenizer. Real corpora only; synthetic ones are written by their
        generator (stages/tokenize.py)."""
        raise NotImplementedError(f"task kind '{self.name}' has no real-corpus reader; it needs a synthetic corpus")

    # -- data module: one example of a split
    def open_split(self, directory: Path, split: str, max_len: int) -> dict[str, Any]:
        """The split's arrays: ids / starts / ends (what one example spans) plus this kind's fields."""
        ids, starts, ends = arrays.read_ragged(directory, split)
        fields = {"ids": ids, "starts": starts, "ends": ends}
        for name in self.aligned:
            fields[name] = arrays.load_array(directory / f"{split}.{name}.npy",
                                             f"re-run `dvc repro tokenize@{directory.name}`", mmap_mode="r")
        return fields

    def item(self, fields: dict[str, Any], i: int) -> dict[str, Any]:
        """This kind's part of example i (beyond ids and length): numpy arrays or ints."""
        span = slice(fields["starts"][i], fields["ends"][i])
        return {name: fields[name][span] for name in self.aligned}

    def truncates(self, max_len: int | None) -> bool:
        """Whether collation cuts sequences to max_len (an LM window is already max_len + 1 long)."""
        return max_len is not None

    def collate(self, items: list[dict], cut: Callable, pad_id: int) -> dict:
        """This kind's batch keys, from `item` outputs (tensors by then); `cut` truncates a sequence."""
        from pipeline.data.batching import pad_right

        return {name: pad_right([cut(it[name]) for it in items], pad)[0] for name, pad in self.aligned.items()}

    # -- evaluate
    def dummy_batch(self, ids, length: int, batch_size: int) -> dict:
        """This kind's keys of a speed-measurement batch built on real `ids` [B, length(+1)]."""
        return {}

    def input_width(self, length: int) -> int:
        """Tokens per row of a speed batch for `length` positions (an LM also needs the next token)."""
        return length

    def evaluate(self, module, cfg, seed: int, test_metric: Callable) -> dict:
        """One seed's test result: {seed, overall, per_bucket, count, ...}. Default: the bucketed metric."""
        return test_metric(module, cfg, seed)

    def summarize(self, seeds: list[dict]) -> dict:
        """Extra eval.json fields from the per-seed results (translation: BLEU details)."""
        return {}

    def diverged(self, best_val: float | None, metric: str, meta: dict) -> str | None:
        """Why a finished training run must not be reported (None if it may): a non-finite best
        validation metric. Kinds with a comparable chance level add a margin test."""
        import math

        if best_val is None or not math.isfinite(best_val):
            return f"best validation {metric} is {best_val}"
        return None

    def task_module(self) -> type:
        """The kind's model, a plain TaskModule subclass: what evaluate and measure load; the train stage
        trains pipeline/tasks/trainable.py's `trainable(kind.task_module())`."""
        path, _, cls = self.module.partition(":")
        return getattr(importlib.import_module(path), cls)
