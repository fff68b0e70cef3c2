"""Translation scoring for the evaluate stage: decode the test split, score with sacreBLEU.

BLEU and chrF are corpus-level (sacreBLEU's defaults, signature stored); BLEU is also computed per
source-length bucket over the sentences of that bucket.
"""
from __future__ import annotations

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
import torch

from pipeline import buckets
from pipeline.config import Config
from pipeline.data.datamodule import SequenceDataModule, tokenized_dir
from pipeline.data.tokenizers import decode, load_tokenizer


def bleu_by_bucket(module, cfg: Config, seed: int, n_samples: int = 5) -> dict:
    from pipeline.stages.evaluate import test_metric

    ppl = test_metric(module, cfg, seed)  # target-side perplexity, teacher-forced
    directory = tokenized_dir(cfg)
    tokenizer = load_tokenizer(directory / "tokenizer.json")
    refs = (directory / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    srcs = (directory / "test.src.txt").read_text(encoding="utf-8").splitlines()
    datamodule = SequenceDataModule(cfg, seed=seed)
    split = datamodule.split("test")
    n = len(split)
    device = next(module.parameters()).device
    hyps: list[str] = [""] * n
    order = np.argsort(split.lengths, kind="stable")  # similar lengths together: fewer wasted steps
    bsz = cfg.data.eval_batch_size
    for start in range(0, n, bsz):
        idx = order[start:start + bsz].tolist()
        batch = datamodule.loader("test").collate_fn([{**split[i], "weight": 1.0} for i in idx])
        out = module.translate(batch["ids"].to(device), batch["mask"].to(device), beam=cfg.eval.beam_size)
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
    return {"seed": seed, "overall": bleu.score, "per_bucket": per_bucket, "count": count,
            "chrf": chrf.score, "target_ppl": ppl["overall"], "bleu_signature": str(bleu_metric.get_signature()),
            "decoding": {"beam_size": cfg.eval.beam_size, "examples": n},
            "samples": [{"source": srcs[i], "reference": refs[i], "hypothesis": hyps[i]} for i in range(min(n_samples, n))]}
