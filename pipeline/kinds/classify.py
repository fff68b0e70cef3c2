"""Sequence classification: whole documents with one label each.

On disk: `<split>.ids/offsets` (whole documents, no specials) and `<split>.labels.npy` (int64 [n];
names in meta["labels"], ids follow the sorted names). Truncation to `task.max_len` happens at
batching (meta: `over_max_len` per split). Raw corpora give `examples.csv` (label,text[,split]);
without a split column the texts are deduplicated and the split is stratified by label. Baseline:
the majority class of train. Buckets count the document tokens the model saw (after truncation).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.data import arrays
from pipeline.data.splits import (SPLIT_ALIASES, SPLITS, cross_split_repeats, first_occurrences, stratified_holdout,
                                  stratified_split)
from pipeline.data.tokenizers import encode_batch, special_ids, train_tokenizer
from pipeline.kinds.base import TaskKind, register_kind
from pipeline.schema import ConfigError


@register_kind("classify")
class Classification(TaskKind):
    causal = False
    bucket_unit = "document tokens seen"
    module = "pipeline.tasks.classify:Classifier"
    may_keep_tail = True

    def tokenize(self, task: Any, raw_dir: Path, out_dir: Path, meta: dict) -> Any:
        texts, labels, label_names, meta["hygiene"] = read_classification(raw_dir, task)
        tok = train_tokenizer(task.tokenizer, texts["train"], vocab_size=task.vocab_size,
                              min_frequency=task.min_frequency, lowercase=task.lowercase)
        meta.update(vocab_size=tok.get_vocab_size(), special=special_ids(tok), labels=label_names, splits={})
        unk = meta["special"]["unk"]
        for split in SPLITS:
            # an empty (or whitespace-only) document becomes one <unk>: a row with no token at all would
            # give attention nothing to attend to and max pooling -inf, i.e. a NaN loss
            docs = [d or [unk] for d in encode_batch(tok, texts[split])]
            lengths = np.array([len(d) for d in docs], dtype=np.int64)
            ids = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(lengths.sum()))
            arrays.write_ragged(out_dir, split, ids, lengths)
            np.save(out_dir / f"{split}.labels.npy", np.asarray(labels[split], dtype=np.int64))
            meta["splits"][split] = {**arrays.split_stats(lengths, n_examples=len(docs)),
                                     "over_max_len": int((lengths > task.max_len).sum())}
        meta["max_len"] = task.max_len
        meta["baseline"] = {"name": "majority class", "value": arrays.majority_accuracy(labels["train"], labels["test"])}
        return tok

    def bucket_label(self, task: Any, meta: dict) -> str:
        test = meta["splits"]["test"]
        return self.cut_label(test.get("over_max_len"), test["examples"], "documents",
                              "last" if task.truncate == "tail" else "first", task.max_len)

    def open_split(self, directory: Path, split: str, max_len: int) -> dict[str, Any]:
        labels = arrays.load_array(directory / f"{split}.labels.npy", f"re-run `dvc repro tokenize@{directory.name}`")
        return {**super().open_split(directory, split, max_len), "label": labels}

    def item(self, fields: dict[str, Any], i: int) -> dict[str, Any]:
        return {"label": int(fields["label"][i])}

    def collate(self, items: list[dict], cut: Callable, pad_id: int) -> dict:
        import torch

        return {"label": torch.tensor([it["label"] for it in items])}

    def dummy_batch(self, ids, length: int, batch_size: int) -> dict:
        import torch

        return {"label": torch.zeros(batch_size, dtype=torch.long, device=ids.device)}


def read_classification(raw_dir: Path, task: Any) -> tuple[dict[str, list[str]], dict[str, list[int]], list[str], dict]:
    """Texts and integer labels per split from `examples.csv` (label,text[,split]), and what was done
    about duplicate texts.

    Label ids follow the sorted label names. Without a `split` column, texts are deduplicated
    (splits.normalise_text: case and spacing) before a stratified split by `task.val_fraction` /
    `task.test_fraction` / `task.split_seed`, so no test text is a copy of a training text. An
    official split is kept as published; its val/test texts that also occur in train are counted."""
    path = raw_dir / "examples.csv"
    if not path.exists():
        raise ConfigError(f"{path}: missing; classification corpora need examples.csv (label,text)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"label", "text"} <= set(rows[0]):
        raise ConfigError(f"{path}: expected columns label,text")
    if "split" in rows[0]:
        hygiene = {"duplicates_dropped": 0}
    else:
        keep = first_occurrences([r["text"] for r in rows])
        hygiene = {"duplicates_dropped": int((~keep).sum())}
        rows = [r for r, k in zip(rows, keep) if k]
    label_names = sorted({r["label"] for r in rows})
    label_id = {name: i for i, name in enumerate(label_names)}
    y = np.array([label_id[r["label"]] for r in rows], dtype=np.int64)
    if "split" in rows[0]:
        split_of = np.array([SPLIT_ALIASES.get(r["split"], r["split"]) for r in rows], dtype=object)
        if not (split_of == "val").any():  # official train/test only: carve val out of train
            train = np.flatnonzero(split_of == "train")
            holdout = stratified_holdout(y[train], task.val_fraction, task.split_seed)
            split_of[train[holdout]] = "val"
    else:
        split_of = stratified_split(y, task.val_fraction, task.test_fraction, task.split_seed)
    texts, labels = {}, {}
    for split in SPLITS:
        idx = np.flatnonzero(split_of == split)
        if len(idx) == 0:
            raise ConfigError(f"{path}: the '{split}' split is empty (task.val_fraction/test_fraction too small?)")
        texts[split] = [rows[i]["text"] for i in idx]
        labels[split] = y[idx].tolist()
    hygiene["repeats_of_train"] = cross_split_repeats([r["text"] for r in rows], split_of)
    return texts, labels, label_names, hygiene
