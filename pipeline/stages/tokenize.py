"""Stage `tokenize`: raw corpus of a task -> splits, tokenizer, token-id arrays and meta.json.

Output in `<paths.tokenized>/<task>/` (written atomically). Every kind has `tokenizer.json` and
`meta.json`; ids are int32, offsets int64 [n_examples + 1] with example i = ids[offsets[i]:offsets[i+1]];
the specials are <pad>=0 <unk>=1 <eos>=2 <sep>=3 <cls>=4 for every task (meta["special"]).

* kind `lm`:       {split}.ids.npy, {split}.offsets.npy. A split is ONE example: the whole split as
                   a single stream, each line's tokens followed by `<eos>` (the Mikolov convention),
                   so offsets is [0, n_tokens]. Length statistics are over lines (incl. `<eos>`).
* kind `classify`: {split}.ids.npy, {split}.offsets.npy, {split}.labels.npy (int64 [n]; names in
                   meta["labels"], ids follow the sorted names). Whole documents, no specials;
                   truncation to `task.max_len` happens at batching (meta: `over_max_len` per split).
* kind `translate`: {split}.src.ids.npy + {split}.src.offsets.npy, {split}.tgt.ids.npy +
                   {split}.tgt.offsets.npy (one joint BPE for both sides, trained on the training
                   split's sources and targets; NO specials added: no <eos>/<bos>, the task adds
                   them), and {split}.src.txt / {split}.tgt.txt: the raw texts, one per line, same
                   order (sacrebleu references). meta: per split `examples` and `src`/`tgt` length
                   statistics; `copy_source_bleu_test` (+ `bleu_signature`): sacrebleu corpus BLEU
                   of using the source as the translation.
* kind `recall` (synthetic): {split}.ids.npy, {split}.offsets.npy and {split}.targets.npy: int32,
                   aligned with ids (same length, same offsets); -1 = no target at that position;
                   otherwise target[t] is the token the model must output AT position t, having
                   read ids[:t+1] (the answer is never in the input).
* synthetic tasks (corpus kind `synthetic`, `task.tokenizer: none`): the ids are the generator's
  own vocabulary (meta["tokens"][id] is each id's string; tokenizer.json is a word-level tokenizer
  over these strings, for decoding). Besides train/val/test they write the extra splits named in
  meta["extra_test_splits"] (`test_2x`, `test_4x`: generated at 2x/4x the training length, same
  format). ListOps is kind `classify` (labels 0-9 = the expression's value).

Splits: official where the corpus has them; otherwise classification is split stratified by
label, and translation pairs by `group` (e.g. whole Bible chapters: no near-duplicate verses
across splits), both with task.val_fraction / task.test_fraction / task.split_seed.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.config import ROOT, ConfigError, to_dict
from pipeline.data import synthetic
from pipeline.data.fetch import atomic_dir
from pipeline.data.tokenizers import (SPECIAL_TOKENS, UNK, encode_batch, save_tokenizer, special_ids,
                                      train_tokenizer)

SCHEMA = 1
SPLITS = ("train", "val", "test")
LM_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}  # PTB names: valid -> val


def main(cfg: Any) -> None:
    tokenize_task(cfg.task, ROOT / cfg.paths.raw / cfg.task.name, ROOT / cfg.paths.tokenized / cfg.task.name)


def tokenize_task(task: Any, raw_dir: Path, out_dir: Path) -> dict:
    """Tokenize the raw corpus in `raw_dir` for `task` (a TaskConfig) into `out_dir`; returns meta."""
    source_json = raw_dir / "source.json"
    if not source_json.exists():
        raise ConfigError(f"{raw_dir}: no raw data (source.json missing); run "
                          f"`python -m pipeline download task={task.name}` first")
    source = json.loads(source_json.read_text(encoding="utf-8"))
    if source.get("kind") == "synthetic":
        return tokenize_synthetic(task, source, out_dir)
    if source.get("kind") not in (None, task.kind):
        raise ConfigError(f"task '{task.name}' has kind '{task.kind}' but corpus '{task.corpus}' is a "
                          f"'{source['kind']}' corpus; fix task.kind or task.corpus")
    if task.kind == "translate":
        return tokenize_translation(task, raw_dir, out_dir, source)
    if task.kind == "lm":
        texts, labels, label_names = read_lm_splits(raw_dir), None, None
    elif task.kind == "classify":
        texts, labels, label_names = read_classification(raw_dir, task)
    else:
        raise ConfigError(f"task.kind='{task.kind}' needs a synthetic corpus (mqar, selcopy); "
                          f"'{task.corpus}' is not one")

    tok = train_tokenizer(task.tokenizer, texts["train"], vocab_size=task.vocab_size,
                          min_frequency=task.min_frequency, lowercase=task.lowercase)
    specials = special_ids(tok)
    meta: dict[str, Any] = {
        "schema": SCHEMA, "task": task.name, "kind": task.kind, "corpus": task.corpus,
        "tokenizer": task.tokenizer, "vocab_size": tok.get_vocab_size(), "special": specials,
    }
    if label_names is not None:
        meta["labels"] = label_names
    meta["splits"] = {}

    with atomic_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp / "tokenizer.json")
        ids_by_split = {}
        for split in SPLITS:
            docs = encode_batch(tok, texts[split])
            if task.kind == "lm":
                docs = [d + [specials["eos"]] for d in docs]
            lengths = np.array([len(d) for d in docs], dtype=np.int64)
            ids = np.fromiter((i for d in docs for i in d), dtype=np.int32, count=int(lengths.sum()))
            offsets = np.array([0, len(ids)]) if task.kind == "lm" else np.concatenate([[0], np.cumsum(lengths)])
            np.save(tmp / f"{split}.ids.npy", ids)
            np.save(tmp / f"{split}.offsets.npy", offsets.astype(np.int64))
            if labels is not None:
                np.save(tmp / f"{split}.labels.npy", np.asarray(labels[split], dtype=np.int64))
            meta["splits"][split] = split_stats(lengths, n_examples=len(offsets) - 1)
            if task.kind == "lm":
                meta["splits"][split]["lines"] = len(docs)
            else:
                meta["splits"][split]["over_max_len"] = int((lengths > task.max_len).sum())
            ids_by_split[split] = ids
        if task.kind == "lm":
            meta["unigram_ppl_test"] = unigram_perplexity(ids_by_split["train"], ids_by_split["test"],
                                                          meta["vocab_size"])
        else:
            meta["max_len"] = task.max_len
            meta["majority_accuracy_test"] = majority_accuracy(labels["train"], labels["test"])
        meta["source"] = source
        write_meta(tmp, meta)
    return meta


def write_meta(directory: Path, meta: dict) -> None:
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- reading raw data


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


def read_classification(raw_dir: Path, task: Any) -> tuple[dict[str, list[str]], dict[str, list[int]], list[str]]:
    """Texts and integer labels per split from `examples.csv` (label,text[,split]).

    Label ids follow the sorted label names. Without a `split` column, a stratified split by
    `task.val_fraction` / `task.test_fraction` / `task.split_seed`."""
    path = raw_dir / "examples.csv"
    if not path.exists():
        raise ConfigError(f"{path}: missing; classification corpora need examples.csv (label,text)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"label", "text"} <= set(rows[0]):
        raise ConfigError(f"{path}: expected columns label,text")
    label_names = sorted({r["label"] for r in rows})
    label_id = {name: i for i, name in enumerate(label_names)}
    y = np.array([label_id[r["label"]] for r in rows], dtype=np.int64)
    if "split" in rows[0]:
        split_of = np.array([{"valid": "val", "validation": "val"}.get(r["split"], r["split"]) for r in rows],
                            dtype=object)
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
    return texts, labels, label_names


def stratified_split(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per example; each class is split in the given proportions (rounded)."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise ConfigError(f"task.val_fraction={val_fraction}, task.test_fraction={test_fraction}: "
                          "both must be > 0 with a sum below 1")
    rng = np.random.default_rng(seed)
    split_of = np.full(len(y), "train", dtype=object)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test, n_val = round(len(idx) * test_fraction), round(len(idx) * val_fraction)
        split_of[idx[:n_test]] = "test"
        split_of[idx[n_test:n_test + n_val]] = "val"
    return split_of


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out `fraction` of each class (rounded)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"task.val_fraction={fraction}: must be in (0, 1) to carve val out of train")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        mask[idx[:round(len(idx) * fraction)]] = True
    return mask


def grouped_split(groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split name per example, keeping each group whole: groups in seeded random order fill test
    until it holds >= test_fraction of the examples, then val likewise; the rest is train."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise ConfigError(f"task.val_fraction={val_fraction}, task.test_fraction={test_fraction}: "
                          "both must be > 0 with a sum below 1")
    names, inverse, counts = np.unique(np.asarray(groups, dtype=object), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(groups)
    group_split = np.full(len(names), "train", dtype=object)
    filled = {"test": 0, "val": 0}
    target = {"test": test_fraction * n, "val": val_fraction * n}
    current = "test"
    for g in order:
        if current == "test" and filled["test"] >= target["test"]:
            current = "val"
        if current == "val" and filled["val"] >= target["val"]:
            break
        group_split[g] = current
        filled[current] += counts[g]
    return group_split[inverse]


# ----------------------------------------------------------------------------- translation

ENCODE_CHUNK = 50_000  # sentences encoded at once (bounds memory on WMT-sized corpora)


def read_translation(raw_dir: Path, task: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Sources and targets per split from `pairs.tsv` (header with src, tgt and split or group)."""
    path = raw_dir / "pairs.tsv"
    if not path.exists():
        raise ConfigError(f"{path}: missing; translation corpora need pairs.tsv (re-run the download stage)")
    with open(path, encoding="utf-8", newline="\n") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[-2:] != ["src", "tgt"] or not {"split", "group"} & set(header):
            raise ConfigError(f"{path}: header must name src, tgt and split or group; got {header}")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise ConfigError(f"{path}: line {bad + 2} has {len(rows[bad])} fields, expected {len(header)}")
    col = {name: i for i, name in enumerate(header)}
    if "split" in col:
        split_of = np.array([{"valid": "val", "validation": "val"}.get(r[col["split"]], r[col["split"]])
                             for r in rows], dtype=object)
        if not (split_of == "val").any():
            train = np.flatnonzero(split_of == "train")
            holdout = np.random.default_rng(task.split_seed).random(len(train)) < task.val_fraction
            split_of[train[holdout]] = "val"
    else:
        split_of = grouped_split([r[col["group"]] for r in rows], task.val_fraction, task.test_fraction,
                                 task.split_seed)
    src, tgt = {}, {}
    for split in SPLITS:
        idx = np.flatnonzero(split_of == split)
        if len(idx) == 0:
            raise ConfigError(f"{path}: the '{split}' split is empty (task.val_fraction/test_fraction too small?)")
        src[split] = [rows[i][-2] for i in idx]
        tgt[split] = [rows[i][-1] for i in idx]
    return src, tgt


def encode_flat(tok: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 flat, lengths int64) of `texts`, encoded in chunks."""
    id_parts, len_parts = [], []
    for start in range(0, len(texts), ENCODE_CHUNK):
        docs = encode_batch(tok, texts[start:start + ENCODE_CHUNK])
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        id_parts.append(np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(lengths.sum())))
        len_parts.append(lengths)
    if not id_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(id_parts), np.concatenate(len_parts)


def copy_source_bleu(src: Sequence[str], tgt: Sequence[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU of the untranslated source against the references, and its signature."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(list(src), [list(tgt)])
    return round(float(score.score), 2), str(bleu.get_signature())


def tokenize_translation(task: Any, raw_dir: Path, out_dir: Path, source: dict) -> dict:
    src, tgt = read_translation(raw_dir, task)
    tok = train_tokenizer(task.tokenizer, itertools.chain(src["train"], tgt["train"]), vocab_size=task.vocab_size,
                          min_frequency=task.min_frequency, lowercase=task.lowercase)
    meta: dict[str, Any] = {
        "schema": SCHEMA, "task": task.name, "kind": task.kind, "corpus": task.corpus,
        "tokenizer": task.tokenizer, "vocab_size": tok.get_vocab_size(), "special": special_ids(tok),
        "joint_vocabulary": True, "max_len": task.max_len, "splits": {},
    }
    with atomic_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp / "tokenizer.json")
        for split in SPLITS:
            meta["splits"][split] = {"examples": len(src[split])}
            for side, texts in (("src", src[split]), ("tgt", tgt[split])):
                ids, lengths = encode_flat(tok, texts)
                np.save(tmp / f"{split}.{side}.ids.npy", ids)
                np.save(tmp / f"{split}.{side}.offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
                (tmp / f"{split}.{side}.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
                stats = split_stats(lengths, n_examples=len(texts))
                stats.pop("examples")
                stats["over_max_len"] = int((lengths > task.max_len).sum())
                stats["mean_words"] = round(float(np.mean([len(t.split()) for t in texts])), 2)
                meta["splits"][split][side] = stats
        meta["copy_source_bleu_test"], meta["bleu_signature"] = copy_source_bleu(src["test"], tgt["test"])
        meta["source"] = source
        write_meta(tmp, meta)
    return meta


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
    meta: dict[str, Any] = {
        "schema": SCHEMA, "task": task.name, "kind": task.kind, "corpus": name, "tokenizer": "none",
        "vocab_size": len(vocab), "special": special_ids(tok), "tokens": vocab,
        "synthetic": {**to_dict(cfg), "generator_version": synthetic.GENERATOR_VERSION},
        "split_lengths": synthetic.split_lengths(cfg),
        "extra_test_splits": [s for s in splits if s not in SPLITS], "splits": {},
    }
    if task.kind == "classify":
        meta["labels"] = [str(d) for d in range(10)]
    labels = {}
    with atomic_dir(out_dir) as tmp:
        save_tokenizer(tok, tmp / "tokenizer.json")
        for split in splits:
            data = synthetic.generate(name, cfg, split)
            np.save(tmp / f"{split}.ids.npy", data.ids.astype(np.int32))
            np.save(tmp / f"{split}.offsets.npy", data.offsets.astype(np.int64))
            stats = split_stats(np.diff(data.offsets), n_examples=len(data.offsets) - 1)
            if data.targets is not None:
                np.save(tmp / f"{split}.targets.npy", data.targets.astype(np.int32))
                stats["targets"] = int((data.targets >= 0).sum())
            if data.labels is not None:
                np.save(tmp / f"{split}.labels.npy", data.labels.astype(np.int64))
                labels[split] = data.labels.tolist()
            meta["splits"][split] = stats
        meta["chance_accuracy_test"] = synthetic.chance_accuracy(name, cfg)
        if labels:
            meta["majority_accuracy_test"] = majority_accuracy(labels["train"], labels["test"])
            meta["chance_accuracy_test"] = meta["majority_accuracy_test"]  # ListOps: the majority class
        meta["source"] = source
        write_meta(tmp, meta)
    return meta


# ----------------------------------------------------------------------------- statistics


def length_histogram(lengths: np.ndarray, first: int = 16) -> dict[str, int]:
    """Counts in buckets 1-16, 17-32, 33-64, ... up to the bucket holding the longest."""
    hist, lo, hi = {}, 1, first
    top = int(lengths.max()) if len(lengths) else 0
    while True:
        hist[f"{lo}-{hi}"] = int(((lengths >= lo) & (lengths <= hi)).sum())
        if hi >= top:
            return hist
        lo, hi = hi + 1, hi * 2


def split_stats(lengths: np.ndarray, n_examples: int) -> dict[str, Any]:
    return {
        "examples": n_examples,
        "tokens": int(lengths.sum()),
        "max_len": int(lengths.max()),
        "mean_len": round(float(lengths.mean()), 2),
        "length_histogram": length_histogram(lengths),
    }


def unigram_perplexity(train_ids: np.ndarray, test_ids: np.ndarray, vocab_size: int) -> float:
    """Test perplexity of an add-one-smoothed unigram model fitted on train: a chance baseline."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts) - math.log(counts.sum())
    return round(float(np.exp(-log_p[test_ids].mean())), 2)


def majority_accuracy(train_labels: list[int], test_labels: list[int]) -> float:
    majority = Counter(train_labels).most_common(1)[0][0]
    return round(float(np.mean(np.asarray(test_labels) == majority)), 4)
