"""Translation (source → target) for every model that can serve it.

* Any causal backbone runs as a decoder-only conditional LM over `source <sep> target <eos>`, with
  the loss on the target side only.
* Encoder–decoder models (`pipeline/models/seq2seq.py`) read the source with their encoder and
  decode `<sep> target` → `target <eos>`.
Validation selects checkpoints by target-side perplexity; the evaluate stage decodes the test set
(greedy or beam search) and scores it with sacreBLEU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline import buckets
from pipeline.data.batching import pad_right
from pipeline.models.seq2seq import Seq2Seq
from pipeline.tasks.base import TaskModule
from pipeline.tasks.decoding import beam_search


class Translator(TaskModule):
    metric_name = "ppl"  # validation; the evaluate stage reports BLEU
    higher_is_better = False

    def __init__(self, config: dict, meta: dict):
        super().__init__(config, meta)
        self.encoder_decoder = isinstance(self.backbone, Seq2Seq)
        self.sep, self.eos = meta["special"]["sep"], meta["special"]["eos"]
        self.head = nn.Linear(self.backbone.d_model, meta["vocab_size"], bias=False)
        self.head.weight = self.embed.weight  # tied (Press & Wolf 2017); the vocabulary is joint

    def make_bucket_edges(self) -> list[int]:
        longest = max(s["src"]["max_len"] for s in self.meta["splits"].values())
        return buckets.edges(min(longest, self.cfg.task.max_len), self.cfg.data.bucket_min)

    # -- training: teacher forcing
    def _decoder_only_batch(self, batch):
        """Per example: input = src <sep> tgt, target = (ignored for src) tgt <eos>."""
        inputs, targets = [], []
        for src, s_mask, tgt, t_mask in zip(batch["ids"], batch["mask"], batch["tgt"], batch["tgt_mask"]):
            src, tgt = src[s_mask], tgt[t_mask]
            sep, eos = src.new_tensor([self.sep]), src.new_tensor([self.eos])
            inputs.append(torch.cat([src, sep, tgt]))
            targets.append(torch.cat([torch.full_like(src, -1), tgt, eos]))
        ids, mask = pad_right(inputs, self.pad_id)
        return ids, mask, pad_right(targets, -1)[0]

    def per_example(self, batch):
        if self.encoder_decoder:
            tgt, t_mask = batch["tgt"], batch["tgt_mask"]
            lengths = t_mask.sum(1)
            dec_in = torch.cat([torch.full_like(tgt[:, :1], self.sep), tgt], 1)
            dec_out = torch.cat([tgt, torch.full_like(tgt[:, :1], -1)], 1)
            dec_out = dec_out.masked_fill(torch.cat([~t_mask, torch.ones_like(t_mask[:, :1])], 1), -1)
            dec_out[torch.arange(len(tgt)), lengths] = self.eos
            dec_mask = dec_out >= 0
            hidden = self.backbone(self.emb_drop(self.embed(batch["ids"])), batch["mask"],
                                   self.emb_drop(self.embed(dec_in)), dec_mask)
            targets = dec_out
        else:
            ids, mask, targets = self._decoder_only_batch(batch)
            hidden = self.encode(ids, mask)
        has_target = targets >= 0
        nll = F.cross_entropy(self.head(hidden).transpose(1, 2), targets.clamp(min=0), reduction="none")
        weights = has_target.float() * batch["weight"][:, None]
        bucket = buckets.index(batch["length"], self.bucket_edges)[:, None].expand_as(targets)
        return nll, weights, bucket, nll

    def finalize(self, mean):
        return torch.exp(mean)

    # -- inference
    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(hidden), -1)

    @torch.no_grad()
    def translate(self, src: torch.Tensor, src_mask: torch.Tensor, beam: int = 1, max_len: int | None = None,
                  no_repeat_ngram: int = 0) -> list[list[int]]:
        """Token ids of the best translation of each (right-padded) source."""
        B, device = src.shape[0], src.device
        src_len = src_mask.sum(1)
        limit = max_len or self.cfg.task.max_len
        max_new = torch.clamp(2 * src_len + 10, max=limit)
        if self.encoder_decoder:
            memory = self.backbone.encode(self.embed(src), src_mask)
            state = self.backbone.init_state(memory, src_mask)
            prefix, prefix_len = torch.full((B, 1), self.sep, device=device), torch.ones(B, dtype=torch.long, device=device)

            def step(tokens, st):
                out, st = self.backbone.step(self.embed(tokens), st)
                return self._log_probs(out), st

            reorder = self.backbone.reorder_state
        else:
            prefix = torch.cat([src, torch.full((B, 1), self.pad_id, device=device)], 1)
            prefix[torch.arange(B), src_len] = self.sep
            prefix_len = src_len + 1
            if self.backbone.has_step:
                state = self.backbone.init_state(B, device)

                def step(tokens, st):
                    out, st = self.backbone.step(self.embed(tokens), st)
                    return self._log_probs(out), st

                reorder = self.backbone.reorder_state
            else:  # no recurrent form: re-run the whole prefix each step
                state = torch.zeros(B, 0, dtype=torch.long, device=device)

                def step(tokens, st):
                    st = torch.cat([st, tokens[:, None]], 1)
                    return self._log_probs(self.backbone(self.embed(st))[:, -1]), st

                def reorder(st, index):
                    return st.index_select(0, index)
        return beam_search(step, reorder, state, prefix, prefix_len, self.eos, beam, max_new,
                           no_repeat_ngram=no_repeat_ngram)
