"""memory_attention: segments talk only through the GRU-carried memory, and exactly causally."""
import pytest
import torch

from conftest import step_through
from pipeline.models.memory_attention import MemoryAttention, MemoryAttentionSettings
from pipeline.models.stack import StackConfig

B, D, S = 2, 16, 5


def make(causal, positional="rotary"):
    cfg = StackConfig(name="t", backbone="stack", d_model=D, n_heads=2, positional=positional, dropout=0.0)
    torch.manual_seed(0)
    return MemoryAttention(cfg, causal, MemoryAttentionSettings(segment_len=S, n_memory=3)).eval()


@pytest.mark.parametrize("causal", [True, False])
def test_the_past_reaches_later_segments_and_the_future_never_reaches_earlier_ones(causal):
    block = make(causal)
    x = torch.randn(B, 4 * S, D)
    later = x.clone()
    later[:, 2 * S:] = torch.randn_like(later[:, 2 * S:])  # change segments 2 and 3
    earlier = x.clone()
    earlier[:, 0] = torch.randn_like(earlier[:, 0])  # change the first token only
    with torch.no_grad():
        y, y_later, y_earlier = block(x), block(later), block(earlier)
    # Segments see memory from previous segments only, in both modes.
    torch.testing.assert_close(y[:, : 2 * S], y_later[:, : 2 * S], rtol=0, atol=1e-6)
    for seg in range(1, 4):  # ... and the first token still reaches every later segment through it
        assert not torch.allclose(y[:, seg * S:(seg + 1) * S], y_earlier[:, seg * S:(seg + 1) * S])


@pytest.mark.parametrize("positional", ["rotary", "sinusoidal"])
def test_step_reproduces_forward_across_segments(positional):
    block = make(causal=True, positional=positional)
    L = 3 * S + 2
    x = torch.randn(B, L, D)
    with torch.no_grad():
        y = block(x)
        steps, _ = step_through(block, x)
    torch.testing.assert_close(steps, y, rtol=1e-5, atol=1e-5)


def test_all_padding_segments_leave_the_memory_alone():
    block = make(causal=False)
    mem = block.memory_init.expand(B, -1, -1)
    k = v = torch.randn(B, 2, S, D // 2)
    seg_mask = torch.tensor([[True] * S, [False] * S])
    with torch.no_grad():
        new = block.update(mem, k, v, seg_mask)
    assert torch.equal(new[1], mem[1]) and not torch.allclose(new[0], mem[0])


def test_flops_are_counted_through_the_memory_as_the_benchmark_counts_them():
    """The benchmark counts FLOPs under no_grad with torch's FlopCounterMode, whose ModuleTracker hooks every
    module input that requires grad: an expanded view of the memory parameter made it fail (benchmark@
    memory-transformer, 2026-12-04). Three segments: qkv and out over every token, plus the memory reads."""
    from pipeline.measure.flops import forward_flops_per_token

    block = make(causal=True)
    x = torch.randn(1, 3 * S, D)
    per_token = forward_flops_per_token(lambda: block(x), block, 3 * S)
    assert per_token > 2 * (3 * D * D + D * D)  # at least the qkv and out projections of each token
