"""Sparse attention blocks: exact against dense attention with the same pattern, causal, O(n w) memory."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conftest import step_through
from pipeline.measure.memory import peak_memory_mb
from pipeline.models.attention import MultiHeadAttention
from pipeline.models.sparse_attention import BigBirdAttention, LongformerAttention, SlidingWindowAttention
from pipeline.models.stack import StackConfig

BLOCKS = {"sliding_window": SlidingWindowAttention, "longformer": LongformerAttention, "bigbird": BigBirdAttention}
B, D = 3, 16


def build(name, cfg, causal, **knobs):
    """Block `name` with those of `knobs` its settings have (window, n_global, block_size, n_random_blocks)."""
    cls = BLOCKS[name]
    fields = {f.name for f in dataclasses.fields(cls.settings_class)}
    return cls(cfg, causal, cls.settings_class(**{k: v for k, v in knobs.items() if k in fields}))


def make(name, causal, positional="rotary", **knobs):
    cfg = StackConfig(name="t", backbone="stack", d_model=D, n_heads=2, dropout=0.0, positional=positional)
    torch.manual_seed(0)
    knobs = {"window": 5, "n_global": 2, "block_size": 4, "n_random_blocks": 2, **knobs}
    return build(name, cfg, causal, **knobs).eval(), cfg


def padding_mask(L):
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, L // 2:] = False
    mask[2, 5:] = False
    return mask


def dense_pattern(block, L, mask, causal):
    """The pattern written out as an L x L matrix, straight from the papers' definitions."""
    i, j = torch.arange(L)[:, None], torch.arange(L)[None]
    allowed = ((i - j >= 0) & (i - j <= block.window)) if causal else ((i - j).abs() <= block.window)
    allowed = allowed.repeat(B, 1, 1)
    g = block.n_global
    allowed[:, :, :g] = True  # everyone sees the global tokens
    allowed[:, :g, :] = True  # the global tokens see everyone
    if block.n_random:
        b = block.block
        idx, ok = block.random_blocks(math.ceil(L / b), mask.sum(1), mask.device)
        for e, qb, r in ok.nonzero().tolist():
            kb = int(idx[e, qb, r])
            allowed[e, qb * b:(qb + 1) * b, kb * b:(kb + 1) * b] = True
    if causal:
        return allowed & (i >= j)
    return (allowed & mask[:, None, :]) | (i == j)


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("L", [7, 37])
def test_matches_dense_attention_with_the_same_pattern(name, causal, L):
    block, _ = make(name, causal)
    x = torch.randn(B, L, D)
    mask = torch.ones(B, L, dtype=torch.bool) if causal else padding_mask(L)
    with torch.no_grad():
        y = block(x, mask)
        q, k, v = block.project(x)
        allowed = dense_pattern(block, L, mask, causal)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        ref = block.out(ref.transpose(1, 2).reshape(B, L, D))
    torch.testing.assert_close(y[mask], ref[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("positional", ["rotary", "sinusoidal"])
def test_window_covering_the_sequence_is_full_attention(name, causal, positional):
    L = 20
    sparse, cfg = make(name, causal, positional, window=L, block_size=8)
    dense = MultiHeadAttention(cfg, causal).eval()
    dense.load_state_dict(sparse.state_dict(), strict=False)  # bigbird's extra buffer: its random draws
    x = torch.randn(B, L, D)
    mask = torch.ones(B, L, dtype=torch.bool) if causal else padding_mask(L)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x, mask)[mask], dense(x, mask)[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BLOCKS)
def test_causal_and_step_reproduces_forward(name):
    block, _ = make(name, causal=True)
    L = 30  # several blocks of 4: random blocks and the window cache are both exercised
    x = torch.randn(B, L, D)
    t = 13
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
    with torch.no_grad():
        y, y2 = block(x), block(x2)
        steps, _ = step_through(block, x)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])
    torch.testing.assert_close(steps, y, rtol=1e-5, atol=1e-5)


def test_bigbird_random_pattern_is_fixed_causal_and_padding_free():
    causal_block, _ = make("bigbird", causal=True)
    again, _ = make("bigbird", causal=True)
    assert torch.equal(causal_block.draws, again.draws) and "draws" in causal_block.state_dict()
    nb, m = 12, math.ceil(causal_block.window / causal_block.block)
    idx, ok = causal_block.random_blocks(nb, torch.full((1,), nb * 4), "cpu")
    query_block = torch.arange(nb)[None, :, None].expand_as(idx)
    assert ok.any() and bool((idx[ok] < query_block[ok] - m).all())  # only blocks before the band
    bidir, _ = make("bigbird", causal=False)
    idx_long, ok_long = bidir.random_blocks(nb, torch.tensor([17]), "cpu")
    idx_short, ok_short = bidir.random_blocks(5, torch.tensor([17]), "cpu")
    assert torch.equal(idx_long[:, :5][ok_long[:, :5]], idx_short[ok_short])  # same pattern whatever the padding


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces: the peak intermediate, independent of the allocator."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.bytes = max(self.bytes, t.numel() * t.element_size())
        return out


def largest_intermediate(block, n):
    x = torch.randn(1, n, block.cfg.d_model)
    with torch.no_grad(), LargestTensor() as probe:
        block(x)
    return probe.bytes


@pytest.mark.parametrize("name", BLOCKS)
def test_largest_intermediate_is_linear_in_length(name):
    """At n=8192, w=64 a dense score matrix alone would take n^2 * heads * 4 bytes = 1 GiB."""
    heads = 4
    cfg = StackConfig(name="t", backbone="stack", d_model=64, n_heads=heads, dropout=0.0, positional="sinusoidal")
    block = build(name, cfg, False, window=64, block_size=64, n_global=2, n_random_blocks=2).eval()
    half, full = largest_intermediate(block, 4096), largest_intermediate(block, 8192)
    assert full <= 2.1 * half  # linear, not quadratic, in n
    keys = 2 + 2 * 64 + 3 * 64  # per query at most: global + random blocks + three window blocks
    assert full <= 8192 * keys * heads * 4 < 8192**2 * heads * 4 / 16


def test_peak_memory_is_far_below_dense_scores():
    n, heads = 8192, 4
    cfg = StackConfig(name="t", backbone="stack", d_model=64, n_heads=heads, dropout=0.0)
    block = build("sliding_window", cfg, False, window=64).eval()
    peaks = {}
    with torch.no_grad():
        for length in (n // 2, n):
            x = torch.randn(1, length, 64)
            peaks[length] = peak_memory_mb(lambda: block(x), torch.device("cpu"))
    dense_scores_mb = n * n * heads * 4 / 2**20  # 1 GiB at n = 8192
    assert peaks[n] < dense_scores_mb / 8
    assert peaks[n] <= 2.1 * peaks[n // 2]  # linear, not quadratic, in n


def test_bigbird_decode_cache_grows_and_gathers_only_the_pattern():
    """Past the first buffer (64 positions) the cache doubles; every step still equals forward, and a
    step attends to O(g + w + r·b) keys however long the context."""
    block, _ = make("bigbird", causal=True)
    L = 150
    x = torch.randn(B, L, D)
    with torch.no_grad():
        y = block(x)
        steps, state = step_through(block, x)
    torch.testing.assert_close(steps, y, rtol=1e-5, atol=1e-5)
    assert state["k"].shape[2] >= L and state["k"].shape[0] == B


@pytest.mark.parametrize("name", BLOCKS)
def test_reorder_state_follows_the_batch(name):
    """Beam search reorders the cache by batch row: the next step of row i then equals row index[i]'s."""
    block, _ = make(name, causal=True)
    x = torch.randn(B, 12, D)
    index = torch.arange(B - 1, -1, -1)
    with torch.no_grad():
        state = block.init_state(B)
        for s in range(11):
            _, state = block.step(x[:, s], state)
        y_next, _ = block.step(x[:, 11], state)
        moved, _ = block.step(x[index, 11], block.reorder_state(state, index))
    torch.testing.assert_close(moved, y_next[index], rtol=1e-5, atol=1e-5)
