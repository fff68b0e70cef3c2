"""Encoder-decoder models for translation. Embeddings and the output head live in the task.

Contract (registered with `@register_seq2seq(name, ConfigDataclass)`):

    forward(src_emb (B, S, D), src_mask (B, S), tgt_emb (B, T, D), tgt_mask (B, T)) -> (B, T, D)
    encode(src_emb, src_mask) -> memory
    init_state(memory, src_mask) -> state;  step(y_t_emb (B, D), state) -> (out (B, D), state)
    reorder_state(state, index) -> state  (beam search: pick/duplicate batch rows)

`tgt_emb` is the teacher-forced decoder input (target shifted right); output t sees tgt_emb[<= t] and
the real source tokens only. Right padding of the target cannot reach earlier positions of a causal
decoder, so `tgt_mask` is accepted for symmetry and unused. Every tensor in a state is batch-first,
which is what lets `reorder_state` (base.Recurrent's) be one index_select per tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.models.attention import FeedForward, FeedForwardSettings, add_sinusoidal, attention_dropout, head_count
from pipeline.models.base import Recurrent
from pipeline.models.registry import register_seq2seq
from pipeline.schema import ModelConfig


def _full_mask(src_emb: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones(src_emb.shape[:2], dtype=torch.bool, device=src_emb.device) if src_mask is None else src_mask


class Seq2Seq(Recurrent, nn.Module):
    """init_state(memory, src_mask) / step(y_t_emb, state) / reorder_state: the Recurrent protocol."""

    registry_name: str = ""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model

    @classmethod
    def width_step(cls, cfg: ModelConfig) -> int:
        return 4

    def forward(self, src_emb, src_mask, tgt_emb, tgt_mask=None):
        raise NotImplementedError

    def encode(self, src_emb, src_mask):
        raise NotImplementedError


# ----------------------------------------------------------------------------- RNN + attention


@dataclass
class RNNAttentionConfig(ModelConfig):
    pass


@register_seq2seq("rnn-attention", RNNAttentionConfig)
class RNNAttention(Seq2Seq):
    """Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly Learning to Align and
    Translate": a bidirectional GRU encoder; a GRU decoder that, before each step, scores every source
    annotation h_j against its previous state with e_j = v^T tanh(W s + U h_j) (additive attention)
    and feeds the context with the previous target word. The output mixes state, context and input
    word (their "deep output", here tanh(W [s; c; y]) without maxout)."""

    def __init__(self, cfg: RNNAttentionConfig):
        super().__init__(cfg)
        d, n = cfg.d_model, cfg.n_layers
        self.encoder = nn.GRU(d, d // 2, num_layers=n, batch_first=True, bidirectional=True,
                              dropout=cfg.dropout if n > 1 else 0.0)
        self.init_s = nn.Linear(d, d)  # s_0 from the mean annotation
        self.attn_s = nn.Linear(d, d, bias=False)  # W
        self.attn_h = nn.Linear(d, d)  # U, applied once per source in encode
        self.attn_v = nn.Linear(d, 1, bias=False)  # v
        self.cells = nn.ModuleList([nn.GRUCell(2 * d, d)] + [nn.GRUCell(d, d) for _ in range(n - 1)])
        self.out = nn.Linear(3 * d, d)
        self.drop = nn.Dropout(cfg.dropout)

    @classmethod
    def width_step(cls, cfg):
        return 2  # two encoder directions of d/2 each

    def encode(self, src_emb, src_mask):
        mask = _full_mask(src_emb, src_mask)
        packed = pack_padded_sequence(src_emb, mask.sum(1).clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=src_emb.shape[1])
        h = self.drop(h)  # padded annotations are zeros
        return {"annotations": h, "keys": self.attn_h(h), "mask": mask}

    def init_state(self, memory, src_mask=None):
        mask = memory["mask"]
        mean = memory["annotations"].sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        s0 = torch.tanh(self.init_s(mean))
        return {**memory, "s": s0[:, None].repeat(1, len(self.cells), 1)}  # (B, layers, D)

    def step(self, y_t, state):
        s = state["s"]
        scores = self.attn_v(torch.tanh(self.attn_s(s[:, -1])[:, None] + state["keys"])).squeeze(-1)
        alpha = scores.masked_fill(~state["mask"], float("-inf")).softmax(-1)
        context = torch.bmm(alpha[:, None], state["annotations"]).squeeze(1)
        x, new = torch.cat([y_t, context], -1), []
        for i, cell in enumerate(self.cells):
            new.append(cell(x, s[:, i]))
            x = self.drop(new[-1])
        out = self.drop(torch.tanh(self.out(torch.cat([new[-1], context, y_t], -1))))
        return out, {**state, "s": torch.stack(new, 1)}

    def forward(self, src_emb, src_mask, tgt_emb, tgt_mask=None):
        state = self.init_state(self.encode(src_emb, src_mask))
        outs = []
        for t in range(tgt_emb.shape[1]):  # the attention query depends on the previous state: sequential
            y, state = self.step(tgt_emb[:, t], state)
            outs.append(y)
        return torch.stack(outs, 1)


# ----------------------------------------------------------------------------- Transformer


@dataclass
class TransformerSeq2SeqConfig(ModelConfig):
    n_heads: int = 4
    ffn_mult: int = 4


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (self- or cross-attention).

    Not the stack's `attention` block: that one projects q, k and v of one input with one fused
    Linear(d, 3d), while cross-attention takes keys and values from the encoder, and the KV caches
    of `step` need them apart. Building the self-attention from the fused block instead would also
    draw different initial weights (one 3d x d matrix, not d x d then 2d x d) and change every run."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = head_count(d, n_heads), dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def heads(self, x):
        B, L, D = x.shape
        return x.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)

    def keys_values(self, x):
        k, v = self.kv(x).chunk(2, -1)
        return self.heads(k), self.heads(v)

    def forward(self, x, k, v, attn_mask=None, is_causal=False):
        B, L, D = x.shape
        q = self.heads(self.q(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=attention_dropout(self.dropout, q, self.training))
        return self.out(y.transpose(1, 2).reshape(B, L, D))


def feed_forward(cfg: TransformerSeq2SeqConfig) -> FeedForward:
    """The stack's `ffn` block (Linear, GELU, Linear)."""
    return FeedForward(cfg, causal=False, settings=FeedForwardSettings(mult=cfg.ffn_mult))


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d, cfg.n_heads, cfg.dropout)
        self.norm2, self.ffn = nn.LayerNorm(d), feed_forward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, key_mask):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, *self.attn.keys_values(h), attn_mask=key_mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.self_attn = nn.LayerNorm(d), Attention(d, cfg.n_heads, cfg.dropout)
        self.norm2, self.cross_attn = nn.LayerNorm(d), Attention(d, cfg.n_heads, cfg.dropout)
        self.norm3, self.ffn = nn.LayerNorm(d), feed_forward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, self_kv, cross_kv, key_mask, is_causal):
        x = x + self.drop(self.self_attn(self.norm1(x), *self_kv, is_causal=is_causal))
        x = x + self.drop(self.cross_attn(self.norm2(x), *cross_kv, attn_mask=key_mask))
        return x + self.drop(self.ffn(self.norm3(x)))


@register_seq2seq("transformer-seq2seq", TransformerSeq2SeqConfig)
class TransformerSeq2Seq(Seq2Seq):
    """Vaswani et al. (2017) encoder-decoder, pre-norm (Xiong et al. 2020), sinusoidal positions.

    step keeps, per decoder layer, a KV cache of the target prefix and the cross-attention keys/values
    of the source (computed once in init_state), so a token costs O(t + S), not a re-run of the prefix."""

    def __init__(self, cfg: TransformerSeq2SeqConfig):
        super().__init__(cfg)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self._register_load_state_dict_pre_hook(_rename_old_ffn_keys)

    @classmethod
    def width_step(cls, cfg):
        return cfg.n_heads

    def positions(self, x, offset=0):
        return self.drop(add_sinusoidal(x, offset))

    def encode(self, src_emb, src_mask):
        mask = _full_mask(src_emb, src_mask)
        x = self.positions(src_emb)
        for layer in self.encoder:  # padded queries still see the real keys, so no row is empty
            x = layer(x, mask[:, None, None, :])
        return {"memory": self.enc_norm(x), "mask": mask}

    def init_state(self, memory, src_mask=None):
        cross = [layer.cross_attn.keys_values(memory["memory"]) for layer in self.decoder]
        return {"pos": 0, "mask": memory["mask"], "cross": cross, "self": [None] * len(self.decoder)}

    def forward(self, src_emb, src_mask, tgt_emb, tgt_mask=None):
        memory = self.encode(src_emb, src_mask)
        key_mask = memory["mask"][:, None, None, :]
        x = self.positions(tgt_emb)
        for layer in self.decoder:
            h = layer.norm1(x)
            x = layer(x, layer.self_attn.keys_values(h), layer.cross_attn.keys_values(memory["memory"]),
                      key_mask, is_causal=True)
        return self.dec_norm(x)

    def step(self, y_t, state):
        x = self.positions(y_t[:, None], state["pos"])
        key_mask = state["mask"][:, None, None, :]
        caches = []
        for layer, cross, cache in zip(self.decoder, state["cross"], state["self"]):
            k, v = layer.self_attn.keys_values(layer.norm1(x))
            if cache is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            caches.append((k, v))
            x = layer(x, (k, v), cross, key_mask, is_causal=False)  # one query, only past keys cached
        return self.dec_norm(x)[:, 0], {**state, "pos": state["pos"] + 1, "self": caches}


def _rename_old_ffn_keys(state_dict, prefix, *args):
    """Checkpoints from before the feed-forward became the `ffn` block named its layers ffn.0 / ffn.2."""
    for key in [k for k in state_dict if k.startswith(prefix) and (".ffn.0." in k or ".ffn.2." in k)]:
        state_dict[key.replace(".ffn.0.", ".ffn.up.").replace(".ffn.2.", ".ffn.down.")] = state_dict.pop(key)
