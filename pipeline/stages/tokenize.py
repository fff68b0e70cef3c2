"""Stage `tokenize`: raw corpus of a task -> splits, tokenizer, token-id arrays and meta.json.

Output in `<paths.tokenized>/<task>/` (written atomically): `tokenizer.json`, `meta.json` (the typed
`Meta` of pipeline/artifacts.py) and the split arrays in the format of pipeline/data/arrays.py
(ids int32, offsets int64), with meta.checksums (blake2b of every array file, verified with the
token ids' range when a split is opened: pipeline/data/arrays.py verify_split). The specials are <pad>=0 <unk>=1 <eos>=2 <sep>=3 <cls>=4 for every task
(meta.special). What a kind stores per split, and how a real corpus is split, is its plug-in's
business (pipeline/kinds/<kind>.py); splits are official where the corpus has them.

Synthetic tasks (corpus kind `synthetic`, `task.tokenizer: none`) are written here for every kind:
the ids are the generator's own vocabulary (meta.tokens[id] is each id's string; tokenizer.json is a
word-level tokenizer over these strings, for decoding), plus whichever per-example labels or
per-position targets the generator returns, and the extra splits named in meta.extra_test_splits
(`test_2x`, `test_4x`: generated at 2x/4x the training length, same format).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline import kinds, paths
from pipeline.artifacts import Meta
from pipeline.data import arrays, synthetic
from pipeline.data.fetch import atomic_dir
from pipeline.data.splits import SPLITS
from pipeline.data.tokenizers import SPECIAL_TOKENS, UNK, save_tokenizer, special_ids
from pipeline.schema import ConfigError, to_dict

NEEDS_MODEL = False


def main(cfg: Any) -> None:
    meta = tokenize_task(cfg.task, paths.raw_dir(cfg), paths.tokenized_dir(cfg))
    print(f"[tokenize] {cfg.task.name}: vocabulary {meta['vocab_size']}; "
          + ", ".join(f"{s} {v['examples']} examples" + (f" ({v['tokens']} tokens)" if "tokens" in v else "")
                      + (f" no-recall floor {v['no_recall']}" if "no_recall" in v else "")
                      for s, v in meta["splits"].items()))


def tokenize_task(task: Any, raw_dir: Path, out_dir: Path) -> dict:
    """Tokenize the raw corpus in `raw_dir` for `task` (a TaskConfig) into `out_dir`; returns meta."""
    source_json = raw_dir / paths.SOURCE
    if not source_json.exists():
        raise ConfigError(f"{raw_dir}: no raw data (source.json missing); run "
                          f"`python -m pipeline download task={task.name}` first")
    source = json.loads(source_json.read_text(encoding="utf-8"))
    if source.get("kind") == "synthetic":
        return tokenize_synthetic(task, source, out_dir)
    if source.get("kind") not in (None, task.kind):
        raise ConfigError(f"task '{task.name}' has kind '{task.kind}' but corpus '{task.corpus}' is a "
                          f"'{source['kind']}' corpus; fix task.kind or task.corpus")
    kind = kinds.get(task.kind)
    fields: dict[str, Any] = {"task": task.name, "kind": task.kind, "corpus": task.corpus, "tokenizer": task.tokenizer}
    with atomic_dir(out_dir) as tmp:
        tok = kind.tokenize(task, raw_dir, tmp, fields)
        save_tokenizer(tok, tmp / paths.TOKENIZER)
        meta = Meta(**fields, source=source, checksums=arrays.checksums(tmp))
        meta.write(tmp / paths.META)
    return meta.to_dict()


# ----------------------------------------------------------------------------- synthetic tasks


def vocabulary_tokenizer(vocab: Sequence[str]) -> Any:
    """A word-level tokenizer whose id i is the string vocab[i] (specials first), for decoding."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    if tuple(vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise ValueError("a synthetic vocabulary must start with the shared specials")
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def tokenize_synthetic(task: Any, source: dict, out_dir: Path) -> dict:
    name = task.corpus
    if name not in synthetic.KIND:
        raise ConfigError(f"corpus '{name}' is synthetic but pipeline.data.synthetic has no generator for it")
    if task.kind != synthetic.KIND[name]:
        raise ConfigError(f"task '{task.name}': the synthetic task '{name}' is of kind "
                          f"'{synthetic.KIND[name]}', not task.kind='{task.kind}'")
    if task.tokenizer != "none":
        raise ConfigError(f"task '{task.name}': synthetic tasks use their generator's vocabulary; "
                          f"set task.tokenizer: none (got '{task.tokenizer}')")
    cfg = task.synthetic
    vocab = synthetic.tokens(name, cfg)
    tok = vocabulary_tokenizer(vocab)
    splits = list(synthetic.split_lengths(cfg))
    stats, labels = {}, {}
    with atomic_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp / paths.TOKENIZER)
        for split in splits:
            data = synthetic.generate(name, cfg, split)
            np.save(tmp / f"{split}.ids.npy", data.ids.astype(np.int32))
            np.save(tmp / f"{split}.offsets.npy", data.offsets.astype(np.int64))
            stats[split] = arrays.split_stats(np.diff(data.offsets), n_examples=len(data.offsets) - 1)
            if data.targets is not None:
                np.save(tmp / f"{split}.targets.npy", data.targets.astype(np.int32))
                stats[split]["targets"] = int((data.targets >= 0).sum())
                if name == "mqar":  # the floor, measured on this split (synthetic.no_recall_accuracy)
                    stats[split]["no_recall"] = synthetic.no_recall_accuracy(data.ids, data.targets, data.offsets)
            if data.labels is not None:
                np.save(tmp / f"{split}.labels.npy", data.labels.astype(np.int64))
                labels[split] = data.labels.tolist()
        if labels:  # ListOps: the majority class
            baseline = {"name": "majority class", "value": arrays.majority_accuracy(labels["train"], labels["test"])}
        elif name == "mqar":
            baseline = {"name": "no recall (the most frequent value present)", "value": stats["test"]["no_recall"]}
        else:
            baseline = {"name": "chance", "value": synthetic.chance_accuracy(name, cfg)}
        meta = Meta(task=task.name, kind=task.kind, corpus=name, tokenizer="none", vocab_size=len(vocab),
                    special=special_ids(tok), splits=stats, baseline=baseline, tokens=vocab,
                    labels=[str(d) for d in range(10)] if labels else None,  # ListOps: the value 0-9
                    synthetic={**to_dict(cfg), "generator_version": synthetic.GENERATOR_VERSION},
                    split_lengths=synthetic.split_lengths(cfg),
                    extra_test_splits=[s for s in splits if s not in SPLITS], source=source,
                    checksums=arrays.checksums(tmp))
        meta.write(tmp / paths.META)
    return meta.to_dict()
