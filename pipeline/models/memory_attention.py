"""`memory_attention`: segment-local attention plus a recurrent memory carried across segments.

In the spirit of the Block-Recurrent Transformer (Hutchins et al. 2022) and the Recurrent Memory
Transformer (Bulatov et al. 2022). The sequence is cut into segments of `segment_len` tokens. Tokens
of a segment attend (causally in causal mode) to [n_memory memory vectors ; the segment's tokens].
After the segment, each memory slot reads the segment with attention over the tokens' own keys and
values (as the state vectors of the Block-Recurrent Transformer do) and a GRUCell (Cho et al. 2014)
folds that summary into the slot. Information crosses segments only through the memory, so
attention costs O(L (S + M)) and the memory is a fixed-size state: segment s uses the memory written
after segments < s, which keeps causal mode exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.attention import attention_dropout, head_count, rotary
from pipeline.models.base import Block, Complexity
from pipeline.models.registry import register_block


@dataclass
class MemoryAttentionSettings:
    segment_len: int = 64  # tokens per segment
    n_memory: int = 4  # memory slots carried across segments


@register_block("memory_attention", MemoryAttentionSettings)
class MemoryAttention(Block):
    # Segment-level recurrence (Dai et al. 2019; Bulatov et al. 2022): attention within a segment of s
    # tokens plus a few memory slots carried across segments.
    complexity = Complexity("s·n·d", 1, "s·n", 1, "s·d (segment + memory)", 0, "n/s")
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d, self.n_heads = cfg.d_model, head_count(cfg.d_model, cfg.n_heads)
        self.segment_len, self.n_memory = self.settings.segment_len, self.settings.n_memory
        self.qkv = nn.Linear(d, 3 * d)  # tokens; memory slots go through it too, as keys and values
        self.out = nn.Linear(d, d)
        self.memory_init = nn.Parameter(torch.randn(self.n_memory, d) * 0.02)
        self.read_q = nn.Linear(d, d)  # memory slots query the segment's keys and values
        self.gru = nn.GRUCell(d, d)
        self.use_rotary = cfg.positional == "rotary"
        self.dropout = cfg.dropout

    def heads(self, x):  # (B, L, D) -> (B, H, L, Dh)
        B, L, D = x.shape
        return x.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)

    def memory_kv(self, mem):
        _, k, v = self.qkv(mem).chunk(3, -1)
        return self.heads(k), self.heads(v)  # no rotation: memory slots have no position

    def update(self, mem, k, v, seg_mask):
        """GRU step of every memory slot from its attention read of a segment's keys/values (B, H, n, Dh)."""
        B, M, D = mem.shape
        attn_mask = None
        if seg_mask is not None:
            any_real = seg_mask.any(1)
            # An all-padding segment would give an empty softmax row: let it read anything, then discard.
            attn_mask = (seg_mask | ~any_real[:, None])[:, None, None, :]
        read = F.scaled_dot_product_attention(self.heads(self.read_q(mem)), k, v, attn_mask=attn_mask)
        read = read.transpose(1, 2).reshape(B * M, D)
        new = self.gru(read, mem.reshape(B * M, D)).view(B, M, D)
        return new if seg_mask is None else torch.where(any_real[:, None, None], new, mem)

    def forward(self, x, mask=None):
        B, L, D = x.shape
        q, k, v = (self.heads(t) for t in self.qkv(x).chunk(3, -1))
        if self.use_rotary:
            q, k = rotary(q), rotary(k)
        key_mask = None if self.causal or mask is None or bool(mask.all()) else mask
        # repeat, not expand: under no_grad an expanded view of a parameter requires grad without a grad_fn,
        # which torch's ModuleTracker (FlopCounterMode, the benchmark's FLOP count) cannot hook when passed to qkv
        mem = self.memory_init.unsqueeze(0).repeat(B, 1, 1)
        M, outs = self.n_memory, []
        for start in range(0, L, self.segment_len):
            seg = slice(start, min(start + self.segment_len, L))
            n = seg.stop - seg.start
            mk, mv = self.memory_kv(mem)
            # Memory columns are always visible; token columns causal or padding-masked.
            tokens = torch.ones(n, n, dtype=torch.bool, device=x.device).tril() if self.causal else \
                torch.ones(n, n, dtype=torch.bool, device=x.device)
            attn_mask = torch.cat([torch.ones(n, M, dtype=torch.bool, device=x.device), tokens], 1)
            if key_mask is not None:
                attn_mask = attn_mask & torch.cat([torch.ones(B, M, dtype=torch.bool, device=x.device),
                                                   key_mask[:, seg]], 1)[:, None, None, :]
            y = F.scaled_dot_product_attention(q[:, :, seg], torch.cat([mk, k[:, :, seg]], 2),
                                               torch.cat([mv, v[:, :, seg]], 2), attn_mask=attn_mask,
                                               dropout_p=attention_dropout(self.dropout, q, self.training))
            y = self.out(y.transpose(1, 2).reshape(B, n, D))
            outs.append(y)
            if seg.stop < L:
                mem = self.update(mem, k[:, :, seg], v[:, :, seg], None if key_mask is None else key_mask[:, seg])
        return torch.cat(outs, 1)

    # Recurrent form: the memory plus a KV cache of the current segment only (at most segment_len keys).
    def init_state(self, batch_size, device=None):
        mem = self.memory_init.expand(batch_size, -1, -1)
        return {"pos": 0, "mem": mem, "kv": None}

    def step(self, x_t, state):
        B, D = x_t.shape
        q, k, v = (self.heads(t) for t in self.qkv(x_t.unsqueeze(1)).chunk(3, -1))
        if self.use_rotary:
            q, k = rotary(q, state["pos"]), rotary(k, state["pos"])
        kv = torch.stack([k, v]) if state["kv"] is None else torch.cat([state["kv"], torch.stack([k, v])], 3)
        mk, mv = self.memory_kv(state["mem"])
        y = F.scaled_dot_product_attention(q, torch.cat([mk, kv[0]], 2), torch.cat([mv, kv[1]], 2))
        mem = state["mem"]
        if kv.shape[3] == self.segment_len:  # segment complete: write it into memory, start a fresh cache
            mem, kv = self.update(mem, kv[0], kv[1], None), None
        return self.out(y.reshape(B, D)), {"pos": state["pos"] + 1, "mem": mem, "kv": kv}
