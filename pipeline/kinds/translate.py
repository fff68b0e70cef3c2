"""Translation (source -> target): sentence pairs, scored by sacreBLEU on decoded test sources.

On disk: `<split>.src.ids/offsets`, `<split>.tgt.ids/offsets` (one joint BPE for both sides, trained
on the training split's sources and targets; NO specials added: no <eos>/<bos>, the task adds them),
and `<split>.src.txt` / `<split>.tgt.txt`: the raw texts, one per line, same order (sacreBLEU
references). meta: per split `examples` and `src`/`tgt` length statistics. Raw corpora give
`pairs.tsv` (header naming src, tgt and split or group); pairs are split by `group` (e.g. whole
Bible chapters: no near-duplicate verses across splits). Baseline: the corpus BLEU of copying the
source. Buckets count source tokens; BLEU is also computed per bucket over its sentences.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import buckets, paths
from pipeline.data import arrays
from pipeline.data.splits import SPLIT_ALIASES, SPLITS, cross_split_repeats, grouped_split, keep_repeats_in_train
from pipeline.data.tokenizers import special_ids, train_tokenizer
from pipeline.kinds.base import TaskKind, register_kind
from pipeline.outcomes import save_translations
from pipeline.stats import bleu_interval, chrf_interval
from pipeline.schema import ConfigError


@register_kind("translate")
class Translation(TaskKind):
    causal = True  # decoder-only models translate as a conditional LM; encoder-decoders ignore it
    encoder_decoder = True
    bucket_unit = "source tokens"
    module = "pipeline.tasks.translate:Translator"
    test_stream = "test.src"

    def tokenize(self, task: Any, raw_dir: Path, out_dir: Path, meta: dict) -> Any:
        src, tgt, meta["hygiene"] = read_translation(raw_dir, task)
        tok = train_tokenizer(task.tokenizer, itertools.chain(src["train"], tgt["train"]), vocab_size=task.vocab_size,
                              min_frequency=task.min_frequency, lowercase=task.lowercase)
        meta.update(vocab_size=tok.get_vocab_size(), special=special_ids(tok), joint_vocabulary=True,
                    max_len=task.max_len, splits={})
        for split in SPLITS:
            meta["splits"][split] = {"examples": len(src[split])}
            for side, texts in (("src", src[split]), ("tgt", tgt[split])):
                ids, lengths = arrays.encode_flat(tok, texts)
                arrays.write_ragged(out_dir, f"{split}.{side}", ids, lengths)
                (out_dir / f"{split}.{side}.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
                stats = arrays.split_stats(lengths, n_examples=len(texts))
                stats.pop("examples")
                stats["over_max_len"] = int((lengths > task.max_len).sum())
                stats["mean_words"] = round(float(np.mean([len(t.split()) for t in texts])), 2)
                meta["splits"][split][side] = stats
        value, meta["bleu_signature"] = copy_source_bleu(src["test"], tgt["test"])
        meta["baseline"] = {"name": "copy the source", "value": value}
        return tok

    def bucket_label(self, task: Any, meta: dict) -> str:
        test = meta["splits"]["test"]
        return self.cut_label((test.get("src") or {}).get("over_max_len"), test["examples"], "sources", "first",
                              task.max_len)

    def open_split(self, directory: Path, split: str, max_len: int) -> dict[str, Any]:
        ids, starts, ends = arrays.read_ragged(directory, f"{split}.src")
        tgt, tgt_starts, tgt_ends = arrays.read_ragged(directory, f"{split}.tgt")
        return {"ids": ids, "starts": starts, "ends": ends, "tgt": tgt, "tgt_starts": tgt_starts, "tgt_ends": tgt_ends}

    def item(self, fields: dict[str, Any], i: int) -> dict[str, Any]:
        return {"tgt": fields["tgt"][fields["tgt_starts"][i]:fields["tgt_ends"][i]]}

    def collate(self, items: list[dict], cut: Callable, pad_id: int) -> dict:
        from pipeline.data.batching import pad_right

        tgt, tgt_mask = pad_right([cut(it["tgt"]) for it in items], pad_id)
        return {"tgt": tgt, "tgt_mask": tgt_mask}

    def dummy_batch(self, ids, length: int, batch_size: int) -> dict:
        import torch

        return {"tgt": ids.flip(1), "tgt_mask": torch.ones_like(ids, dtype=torch.bool)}

    def evaluate(self, module, cfg, seed: int, test_metric: Callable) -> dict:
        return bleu_by_bucket(module, cfg, seed, test_metric)

    def summarize(self, seeds: list[dict]) -> dict:
        """The reported metric is BLEU; target perplexity stays alongside. Its intervals (BLEU's, chrF's) are
        the evaluate stage's, from each seed's sacreBLEU bootstrap (outcomes.intervals_over_seeds)."""
        return {"metric": "bleu", "higher_is_better": True,
                "chrf": float(np.mean([s["chrf"] for s in seeds])),
                "target_ppl": float(np.mean([s["target_ppl"] for s in seeds])),
                "bleu_signature": seeds[0]["bleu_signature"], "samples": seeds[0]["samples"],
                "decoding": seeds[0]["decoding"]}


def read_translation(raw_dir: Path, task: Any) -> tuple[dict[str, list[str]], dict[str, list[str]], dict]:
    """Sources and targets per split from `pairs.tsv` (header with src, tgt and split or group), and
    what was done about repeated sources.

    Split by group: a val/test pair whose source (normalised: case, spacing) also occurs in another
    split moves to train (a verse repeated in another chapter sits on one side only). An official
    split is kept as published; its val/test sources that also occur in train are counted."""
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
        split_of = np.array([SPLIT_ALIASES.get(r[col["split"]], r[col["split"]])
                             for r in rows], dtype=object)
        if not (split_of == "val").any():
            train = np.flatnonzero(split_of == "train")
            holdout = np.random.default_rng(task.split_seed).random(len(train)) < task.val_fraction
            split_of[train[holdout]] = "val"
    else:
        split_of = grouped_split([r[col["group"]] for r in rows], task.val_fraction, task.test_fraction,
                                 task.split_seed)
    sources = [r[-2] for r in rows]
    moved = 0
    if "split" not in col:
        split_of, moved = keep_repeats_in_train(sources, split_of)
    hygiene = {"repeats_moved_to_train": moved, "repeats_of_train": cross_split_repeats(sources, split_of)}
    src, tgt = {}, {}
    for split in SPLITS:
        idx = np.flatnonzero(split_of == split)
        if len(idx) == 0:
            raise ConfigError(f"{path}: the '{split}' split is empty (task.val_fraction/test_fraction too small?)")
        src[split] = [rows[i][-2] for i in idx]
        tgt[split] = [rows[i][-1] for i in idx]
    return src, tgt, hygiene


def copy_source_bleu(src: Sequence[str], tgt: Sequence[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU of the untranslated source against the references, and its signature."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(list(src), [list(tgt)])
    return round(float(score.score), 2), str(bleu.get_signature())



def bleu_by_bucket(module, cfg: Any, seed: int, test_metric: Callable, n_samples: int = 5) -> dict:
    import torch
    from sacrebleu.metrics import BLEU, CHRF

    from pipeline.data.datamodule import SequenceData
    from pipeline.data.tokenizers import decode, load_tokenizer

    ppl = test_metric(module, cfg, seed)  # target-side perplexity, teacher-forced
    directory = paths.tokenized_dir(cfg)
    tokenizer = load_tokenizer(directory / "tokenizer.json")
    refs = (directory / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    srcs = (directory / "test.src.txt").read_text(encoding="utf-8").splitlines()
    datamodule = SequenceData(cfg, seed=seed)
    split = datamodule.split("test")
    n = len(split)
    device = next(module.parameters()).device
    hyps: list[str] = [""] * n
    order = np.argsort(split.lengths, kind="stable")  # similar lengths together: fewer wasted steps
    bsz = cfg.data.eval_batch_size
    for start in range(0, n, bsz):
        idx = order[start:start + bsz].tolist()
        batch = datamodule.loader("test").collate_fn([{**split[i], "weight": 1.0} for i in idx])
        out = module.translate(batch["ids"].to(device), batch["mask"].to(device), beam=cfg.eval.beam_size,
                               no_repeat_ngram=cfg.eval.no_repeat_ngram)
        for i, tokens in zip(idx, out):
            hyps[i] = decode(tokenizer, tokens)
    refs, srcs = refs[:n], srcs[:n]
    bleu_metric = BLEU()
    bleu = bleu_metric.corpus_score(hyps, [refs])
    chrf = CHRF().corpus_score(hyps, [refs])
    edges = module.bucket_edges
    bucket = buckets.index(torch.as_tensor(split.lengths), edges).tolist()
    per_bucket, count = [], []
    for b in range(len(edges)):
        members = [i for i in range(n) if bucket[i] == b]
        count.append(len(members))
        per_bucket.append(BLEU().corpus_score([hyps[i] for i in members], [[refs[i] for i in members]]).score
                          if members else None)
    # sacreBLEU's own bootstrap (95%), overall and per bucket; hypotheses saved for re-scoring
    interval = bleu_interval(hyps, refs, seed=seed)
    chrf_found = chrf_interval(hyps, refs, seed=seed)
    interval["method"] = f"sacreBLEU bootstrap over test sentences ({interval['n_boot']} resamples)"
    per_bucket_interval = [None if not c else
                           {k: v for k, v in bleu_interval([hyps[i] for i in range(n) if bucket[i] == b],
                                                           [refs[i] for i in range(n) if bucket[i] == b],
                                                           seed=seed).items() if k in ("lo", "hi", "value", "n")}
                           for b, c in enumerate(count)]
    save_translations(paths.run_dir(cfg) / "examples", seed, hyps, refs, srcs)
    return {"seed": seed, "overall": bleu.score, "per_bucket": per_bucket, "count": count,
            "interval": {k: interval[k] for k in ("lo", "hi", "value", "n", "method")},
            "per_bucket_interval": per_bucket_interval,
            "chrf": chrf.score, "chrf_interval": {"lo": chrf_found["lo"], "hi": chrf_found["hi"],
                                                  "method": "sacreBLEU bootstrap over test sentences"},
            "target_ppl": ppl["overall"], "bleu_signature": str(bleu_metric.get_signature()),
            "decoding": {"beam_size": cfg.eval.beam_size, "no_repeat_ngram": cfg.eval.no_repeat_ngram, "examples": n},
            "samples": [{"source": srcs[i], "reference": refs[i], "hypothesis": hyps[i]} for i in range(min(n_samples, n))]}
