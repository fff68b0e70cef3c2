"""The backbone contract, checked over every model config (so a new one is covered automatically)."""
import pytest
import torch

from conftest import step_through
from pipeline.config import ConfigError, choices, load
from pipeline.models import registry
from pipeline.models.base import build_backbone, count_params
from pipeline.models.sizing import TOLERANCE, build_sized

MODELS = choices("model")
B, L = 3, 24


def make(name: str, causal: bool, d_model: int = 32):
    cfg = load([f"model={name}", "profile=smoke", f"model.d_model={d_model}", "model.budget_params=null",
                "model.dropout=0.0"], task_bound=False)
    if causal and not registry.backbone_class(cfg.model.backbone).causal_capable:
        pytest.skip(f"{name} cannot run causally")
    torch.manual_seed(0)
    return build_backbone(cfg.model, causal).eval()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_shape_dtype_and_gradients_reach_every_parameter(name, causal):
    bb = make(name, causal).train()
    x = torch.randn(B, L, bb.d_model)
    y = bb(x, torch.ones(B, L, dtype=torch.bool))
    assert y.shape == x.shape and y.dtype == torch.float32
    y.pow(2).mean().backward()
    missing = [n for n, p in bb.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # learned positions beyond L get no gradient by design
    assert [n for n in missing if "learned_pos" not in n] == []


@pytest.mark.parametrize("name", MODELS)
def test_causal_outputs_ignore_the_future(name):
    bb = make(name, causal=True)
    if not bb.causal:
        pytest.skip("not causal-capable")
    x = torch.randn(B, L, bb.d_model)
    t = L // 2
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
    with torch.no_grad():
        y, y2 = bb(x), bb(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_real_positions(name):
    bb = make(name, causal=False)
    x = torch.randn(B, L, bb.d_model)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 10:] = False
    mask[1, 17:] = False
    noise = torch.where(mask[..., None], x, torch.randn_like(x) * 5)
    with torch.no_grad():
        y, y_noise = bb(x, mask), bb(noise, mask)
        y_short = bb(x[:1, :10], None)  # the same sequence without any padding
    torch.testing.assert_close(y[mask], y_noise[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[0, :10], y_short[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_recurrent_step_reproduces_forward(name):
    bb = make(name, causal=True)
    if not bb.has_step:
        pytest.skip("no recurrent form")
    x = torch.randn(B, L, bb.d_model)
    with torch.no_grad():
        y = bb(x)
        steps, _ = step_through(bb, x)
    torch.testing.assert_close(steps, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("budget", [50_000, 100_000, 400_000])
def test_sizing_lands_within_tolerance(name, budget):
    cfg = load([f"model={name}", f"model.budget_params={budget}"], task_bound=False)
    causal = registry.backbone_class(cfg.model.backbone).causal_capable
    backbone, info = build_sized(cfg.model, causal=causal)
    assert abs(count_params(backbone) - budget) / budget <= TOLERANCE
    assert info["backbone_params"] == count_params(backbone)


def test_unknown_block_is_a_clear_error_at_load():
    with pytest.raises(ConfigError, match=r"transformer.yaml: model.layers\[1\]: unknown block 'mlp'.*attention"):
        load(["model=transformer", "model.layers=[attention,mlp]"])


def test_tcn_receptive_field_formula():
    cfg = load(["model=tcn", "model.n_layers=4", "model.kernel_size=3", "model.dilation_base=2"])
    bb = build_backbone(cfg.model, causal=True)
    assert bb.receptive_field == 1 + 2 * (1 + 2 + 4 + 8)
