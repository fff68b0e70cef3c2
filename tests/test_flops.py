"""FLOPs counting (pipeline/measure/flops.py): attention is counted, causally halved, once.

A Transformer's counted FLOPs must match the closed form: linear layers 2·in·out per token, plus
per attention layer and SDPA call 2·B·H·P·(Dh + Dv), P = L·L (bidirectional) or L(L+1)/2 (causal).
"""
import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.config import load
from pipeline.measure import flops
from pipeline.models.base import build_backbone

D = 64
aten = torch.ops.aten

pytestmark = pytest.mark.usefixtures("one_thread")


def backbone(model: str, causal: bool) -> nn.Module:
    cfg = load([f"model={model}", "model.budget_params=null", f"model.d_model={D}", "model.dropout=0.0"])
    torch.manual_seed(0)
    return build_backbone(cfg.model, causal=causal).eval()


def counted_per_token(bb: nn.Module, n: int) -> float:
    x = torch.randn(1, n, D)
    return flops.forward_flops_per_token(lambda: bb(x), bb, n)


def transformer_closed_form_per_token(bb: nn.Module, n: int, causal: bool) -> float:
    linear = sum(2 * m.in_features * m.out_features for m in bb.modules() if isinstance(m, nn.Linear))
    h = bb.cfg.n_heads
    dh = D // h
    pairs = n * (n + 1) // 2 if causal else n * n
    attention = bb.cfg.n_layers * 2 * h * pairs * (dh + dh)
    return linear + attention / n


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("n", [256, 1024])
def test_transformer_flops_match_the_closed_form(causal, n):
    bb = backbone("transformer", causal)
    counted, expected = counted_per_token(bb, n), transformer_closed_form_per_token(bb, n, causal)
    assert counted == pytest.approx(expected, rel=0.05)


def test_flops_per_token_grow_with_n_for_attention_only():
    grows = {}
    for model in ("transformer", "lstm", "tcn"):
        bb = backbone(model, causal=True)
        grows[model] = counted_per_token(bb, 1024) / counted_per_token(bb, 256)
    assert grows["transformer"] > 1.2  # attention's share goes up linearly with n
    assert grows["lstm"] == pytest.approx(1.0, rel=0.01)
    assert grows["tcn"] == pytest.approx(1.0, rel=0.01)


def test_causal_pairs_follow_torch_top_left_mask():
    for lq, lk in [(5, 5), (3, 7), (7, 3), (1, 4)]:
        mask = torch.ones(lq, lk, dtype=torch.bool).tril()  # is_causal's mask in torch
        assert flops.causal_pairs(lq, lk) == int(mask.sum())


def test_cuda_kernels_counted_once_with_the_causal_discount():
    """Shapes only, on meta tensors: the CUDA kernels take the same formula as the CPU one."""
    q = torch.empty(2, 4, 128, 16, device="meta")
    expected = flops.sdpa_flops(q.shape, q.shape, q.shape, is_causal=True)
    with flops.flop_counter() as counter:
        aten._scaled_dot_product_flash_attention(q, q, q, is_causal=True)
        aten._scaled_dot_product_efficient_attention(q, q, q, None, False, 0.0, True)
    assert counter.get_total_flops() == 2 * expected
    assert expected == 2 * 2 * 4 * (128 * 129 // 2) * (16 + 16)


def test_train_step_counts_backward_as_twice_the_forward():
    bb = backbone("transformer", causal=True).train()
    x = torch.randn(1, 256, D)
    with flops.flop_counter() as counter:
        bb(x).sum().backward()
    by_op = counter.get_flop_counts()["Global"]
    fwd = by_op[aten._scaled_dot_product_flash_attention_for_cpu]
    assert fwd > 0 and by_op[aten._scaled_dot_product_flash_attention_for_cpu_backward] == 2 * fwd


def test_math_fallback_counted_by_its_matmuls_not_twice():
    """The math path computes every (query, key) pair, masked or not: its bmm's count all L·L."""
    bb = backbone("transformer", causal=False)
    n = 256
    with sdpa_kernel(SDPBackend.MATH):
        counted = counted_per_token(bb, n)
    assert counted == pytest.approx(transformer_closed_form_per_token(bb, n, causal=False))
