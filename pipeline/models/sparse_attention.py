"""Sparse attention blocks for `stack` backbones: sliding window, Longformer, BigBird.

- `sliding_window`: query t sees keys t-w..t (causal) or t-w..t+w (bidirectional).
- `longformer` (Beltagy et al. 2020, "Longformer: The Long-Document Transformer"): the window plus
  `n_global` leading tokens that attend to all keys and are attended by all queries.
- `bigbird` (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences"): window + global +
  `n_random_blocks` random key blocks per query block of `block_size` tokens.

None of them builds an n x n mask. The sequence is cut into blocks of b tokens; query block i
attends to key blocks i-m..i+m (i-m..i when causal, m = ceil(w / b)), which cover its band, plus the
global keys and its random key blocks. One batched scaled_dot_product_attention call over all blocks
then costs O(n * (m b + g + r b)) time and memory; a small (b, keys) mask per block cuts the band to
exactly w. Keys are never counted twice: the band and random blocks skip the global positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.attention import attention_dropout, head_count, rotary
from pipeline.models.base import Block, Complexity, map_tensors
from pipeline.models.registry import register_block
from pipeline.schema import ConfigError


def _blocks(x: torch.Tensor, nb: int, b: int) -> torch.Tensor:
    """(..., L, *rest) zero-padded to nb*b positions along dim 2 and split into (..., nb, b, *rest)."""
    pad = nb * b - x.shape[2]
    if pad:
        x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, *x.shape[3:])], 2)
    return x.view(*x.shape[:2], nb, b, *x.shape[3:])


def _neighbours(xb: torch.Tensor, offsets: range) -> torch.Tensor:
    """Concatenate blocks i+o for o in offsets along the in-block axis: (X, Y, nb, b, *) -> (X, Y, nb, len*b, *).

    Blocks outside 0..nb-1 are zeros (their keys are masked anyway)."""
    nb, m = xb.shape[2], max(abs(o) for o in offsets)
    pad = xb.new_zeros(*xb.shape[:2], m, *xb.shape[3:])
    padded = torch.cat([pad, xb, pad], 2)
    return torch.cat([padded[:, :, m + o: m + o + nb] for o in offsets], 3)


def block_sparse_attention(q, k, v, *, causal: bool, window: int, block: int, key_mask=None, n_global: int = 0,
                           random_blocks=None, dropout_p: float = 0.0) -> torch.Tensor:
    """Banded (+ global + random-block) attention over (B, H, L, Dh) tensors, never materialising L x L.

    key_mask: (B, L), True at real tokens (bidirectional only). random_blocks: (idx, ok), both (B, nb, r):
    key block indices per query block, and whether each draw is used.
    """
    B, H, L, Dh = q.shape
    b = min(block, L)
    nb = math.ceil(L / b)
    m = min(math.ceil(window / b), nb - 1)  # neighbour blocks per side that the band can reach
    offsets = range(-m, 1) if causal else range(-m, m + 1)
    dev = q.device
    valid = torch.ones(B, L, dtype=torch.bool, device=dev) if key_mask is None else key_mask

    pos = torch.arange(nb * b, device=dev)
    q_pos = pos.view(nb, b)  # (nb, b)
    k_pos = torch.cat([q_pos + o * b for o in offsets], 1)  # (nb, K); out-of-range ones are masked below
    d = q_pos[:, :, None] - k_pos[:, None, :]  # (nb, b, K): query - key
    band = (d >= 0) & (d <= window) if causal else d.abs() <= window
    band = band & (k_pos >= n_global)[:, None, :] & (k_pos < L)[:, None, :]
    k_valid = _neighbours(_blocks(valid[:, None], nb, b), offsets)[:, 0]  # (B, nb, K)
    # The diagonal is always allowed so that no row is empty (only padded queries would be).
    mask = (band[None] & k_valid[:, :, None, :]) | (d == 0)[None]
    keys = [_neighbours(_blocks(k, nb, b), offsets)]
    values = [_neighbours(_blocks(v, nb, b), offsets)]

    if random_blocks is not None:
        idx, ok = random_blocks  # (B, nb, r)
        r = idx.shape[-1]
        batch = torch.arange(B, device=dev)[:, None, None]
        def gather(xb):  # (B, H, nb, b, Dh) -> (B, H, nb, r*b, Dh)
            picked = xb.transpose(1, 2)[batch, idx]  # (B, nb, r, H, b, Dh)
            return picked.permute(0, 3, 1, 2, 4, 5).reshape(B, H, nb, r * b, Dh)
        keys.insert(0, gather(_blocks(k, nb, b)))
        values.insert(0, gather(_blocks(v, nb, b)))
        r_pos = (idx[..., None] * b + torch.arange(b, device=dev)).view(B, nb, r * b)
        r_valid = _blocks(valid[:, None], nb, b)[:, 0][batch, idx].view(B, nb, r * b)
        r_ok = ok[..., None].expand(B, nb, r, b).reshape(B, nb, r * b) & r_valid & (r_pos >= n_global)
        mask = torch.cat([r_ok[:, :, None, :].expand(B, nb, b, r * b), mask], -1)

    if n_global:
        g = min(n_global, L)
        keys.insert(0, k[:, :, None, :g].expand(B, H, nb, g, Dh))
        values.insert(0, v[:, :, None, :g].expand(B, H, nb, g, Dh))
        g_mask = valid[:, None, None, :g].expand(B, nb, b, g)
        if causal:
            g_mask = g_mask & (torch.arange(g, device=dev) <= q_pos[..., None])[None]
        mask = torch.cat([g_mask, mask], -1)

    y = F.scaled_dot_product_attention(_blocks(q, nb, b), torch.cat(keys, 3), torch.cat(values, 3),
                                       attn_mask=mask[:, None], dropout_p=dropout_p)
    y = y.reshape(B, H, nb * b, Dh)[:, :, :L]
    if n_global:  # global queries attend to every (earlier) key: g full rows, O(g n)
        g = min(n_global, L)
        rows = torch.arange(g, device=dev)[:, None]
        cols = torch.arange(L, device=dev)[None]
        g_mask = (cols <= rows) if causal else (valid[:, None, None, :] | (cols == rows))
        y_g = F.scaled_dot_product_attention(q[:, :, :g], k, v, attn_mask=g_mask, dropout_p=dropout_p)
        y = torch.cat([y_g, y[:, :, g:]], 2)
    return y


@dataclass
class WindowSettings:
    window: int = 64  # keys each query sees on one side


@dataclass
class LongformerSettings(WindowSettings):
    n_global: int = 1  # leading tokens that attend to and are seen by all


@dataclass
class BigBirdSettings(LongformerSettings):
    n_random_blocks: int = 1  # random key blocks per query block
    block_size: int = 32  # block granularity of the sparse pattern


class SparseAttention(Block):
    # Beltagy et al. (2020), Zaheer et al. (2020): each query sees O(w) keys (window, globals, random blocks).
    complexity = Complexity("w·n·d", 1, "w·n", 1, "w·d (window cache)", 0, "n/w")
    """Projections as in the dense `attention` block (same parameter names), sparse pattern in between."""

    n_global = 0
    n_random = 0

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        d, self.n_heads = cfg.d_model, head_count(cfg.d_model, cfg.n_heads)
        if self.settings.window < 1:
            raise ConfigError(f"model.blocks.{self.registry_name}.window must be >= 1, got {self.settings.window}")
        self.window, self.block = self.settings.window, self.settings.window
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.use_rotary = cfg.positional == "rotary"
        self.dropout = cfg.dropout

    def project(self, x, offset=0):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.use_rotary:
            q, k = rotary(q, offset), rotary(k, offset)
        return q, k, v

    def random_blocks(self, nb, lengths, device):
        return None

    def forward(self, x, mask=None):
        B, L, D = x.shape
        q, k, v = self.project(x)
        key_mask = None if self.causal or mask is None or bool(mask.all()) else mask
        lengths = torch.full((B,), L, device=x.device) if key_mask is None else key_mask.sum(1)
        nb = math.ceil(L / min(self.block, L))
        y = block_sparse_attention(q, k, v, causal=self.causal, window=self.window, block=self.block,
                                   key_mask=key_mask, n_global=self.n_global,
                                   random_blocks=self.random_blocks(nb, lengths, x.device),
                                   dropout_p=attention_dropout(self.dropout, q, self.training))
        return self.out(y.transpose(1, 2).reshape(B, L, D))

    # KV cache: the global keys plus the last window+1 non-global keys; O(w + g) per token.
    def init_state(self, batch_size, device=None):
        return {"pos": 0, "global": None, "local": None}

    def step(self, x_t, state):
        B, D = x_t.shape
        pos = state["pos"]
        q, k, v = self.project(x_t.unsqueeze(1), pos)
        kv = torch.stack([k, v])  # (2, B, H, 1, Dh)
        glob, local = state["global"], state["local"]
        if pos < self.n_global:
            glob = kv if glob is None else torch.cat([glob, kv], 3)
        else:
            local = kv if local is None else torch.cat([local, kv], 3)[:, :, :, -(self.window + 1):]
        cache = torch.cat([c for c in (glob, local) if c is not None], 3)
        y = F.scaled_dot_product_attention(q, cache[0], cache[1])
        return self.out(y.reshape(B, D)), {"pos": pos + 1, "global": glob, "local": local}

    def reorder_state(self, state, index):
        # the caches stack keys and values first, (2, B, H, T, Dh): batch is dim 1
        return map_tensors(lambda t: t.index_select(1, index), state)


@register_block("sliding_window", WindowSettings)
class SlidingWindowAttention(SparseAttention):
    pass


@register_block("longformer", LongformerSettings)
class LongformerAttention(SparseAttention):
    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        self.n_global = self.settings.n_global


@register_block("bigbird", BigBirdSettings)
class BigBirdAttention(SparseAttention):
    """Window + global + random key blocks. The random pattern is drawn once, at construction, from the
    global RNG (so it is reproducible under a seed) and saved with the weights as a buffer."""

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        s = self.settings
        self.n_global, self.n_random, self.block = s.n_global, s.n_random_blocks, s.block_size
        max_blocks = math.ceil(getattr(cfg, "max_positions", 8192) / self.block)
        # Uniform draws u in [0, 1), one row per query block; block i picks candidate floor(u * count).
        self.register_buffer("draws", torch.rand(max_blocks, self.n_random))

    def random_blocks(self, nb, lengths, device):
        """(idx, ok), each (B, nb, r). Causal: candidates are blocks before the band, so a query never
        sees the future. Bidirectional: blocks outside the band among the example's *real* blocks, so
        padding cannot change the pattern of real positions."""
        if self.n_random == 0:
            return None
        m = math.ceil(self.window / self.block)  # band reach in blocks, independent of L
        i = torch.arange(nb, device=device)
        u = self.draws[i % self.draws.shape[0]].to(device)[None]  # (1, nb, r); rows repeat past max_positions
        if self.causal:
            count = (i - m).clamp(min=0)[None, :, None]  # blocks 0 .. i-m-1
            idx = (u * count).floor().long().expand(len(lengths), nb, -1)
            low, width = count, torch.zeros_like(count)
        else:
            real = torch.div(lengths + self.block - 1, self.block, rounding_mode="floor")[:, None, None]
            low = (i - m).clamp(min=0)[None, :, None]
            width = (torch.minimum(real - 1, i[None, :, None] + m) - low + 1).clamp(min=0)  # band blocks
            count = real - width
            c = (u * count).floor().long()
            idx = c + (c >= low) * width  # skip over the band
        ok = (count > 0).expand_as(idx).clone()
        for j in range(1, idx.shape[-1]):  # a block drawn twice would be counted twice in the softmax
            ok[..., j] &= ~(idx[..., j: j + 1] == idx[..., :j]).any(-1)
        return idx.clamp(0, nb - 1), ok

    # Random blocks may point anywhere earlier, so the cache keeps every key (O(n) memory, like dense
    # attention), in a buffer that doubles when full (amortised O(1) per token, no O(n) copy per step);
    # each step gathers only the keys its query may see: the globals, the window and its query block's
    # random blocks, O(g + w + r·b) work per token whatever the context length.
    def init_state(self, batch_size, device=None):
        return {"pos": 0, "k": None, "v": None}

    def step(self, x_t, state):
        B, D = x_t.shape
        pos = state["pos"]
        q, k, v = self.project(x_t.unsqueeze(1), pos)  # (B, H, 1, Dh)
        keys, values = state["k"], state["v"]
        if keys is None or pos >= keys.shape[2]:
            cap = max(64, 2 * pos)
            grown_k, grown_v = k.new_zeros(B, k.shape[1], cap, k.shape[3]), v.new_zeros(B, v.shape[1], cap, v.shape[3])
            if keys is not None:
                grown_k[:, :, :pos], grown_v[:, :, :pos] = keys[:, :, :pos], values[:, :, :pos]
            keys, values = grown_k, grown_v
        keys[:, :, pos], values[:, :, pos] = k[:, :, 0], v[:, :, 0]
        g = min(self.n_global, pos + 1)
        start = max(g, pos - self.window)  # the window: pos - window .. pos, past the globals
        parts = [torch.arange(g, device=x_t.device), torch.arange(start, pos + 1, device=x_t.device)]
        if pos >= self.block:  # L > block_size, so forward used blocks of exactly block_size
            i = pos // self.block
            picked = self.random_blocks(i + 1, torch.full((1,), pos + 1, device=x_t.device), x_t.device)
            if picked is not None:
                blocks = picked[0][0, i][picked[1][0, i]]
                j = (blocks[:, None] * self.block + torch.arange(self.block, device=x_t.device)).flatten()
                parts.append(j[(j >= g) & (j < start)])  # outside the globals and the window: no key twice
        seen = torch.cat(parts)
        y = F.scaled_dot_product_attention(q, keys.index_select(2, seen), values.index_select(2, seen))
        return self.out(y.reshape(B, D)), {"pos": pos + 1, "k": keys, "v": values}

    def reorder_state(self, state, index):
        return map_tensors(lambda t: t.index_select(0, index), state)  # keys and values are batch-first
