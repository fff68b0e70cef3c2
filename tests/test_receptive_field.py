"""Measured receptive fields agree with what each architecture defines."""
import pytest
import torch

from pipeline.config import choices, load
from pipeline.measure.receptive_field import measure
from pipeline.models import registry
from pipeline.models.base import build_backbone

MODELS = choices("model")
# Blocks / backbones that connect every pair of positions they may see, by construction. RWKV and the
# memory transformer only read left to right, so built bidirectional they still miss the future.
GLOBAL_BOTH_WAYS = {"attention", "linear_attention", "mamba", "s4d", "rnn", "lstm", "gru"}
GLOBAL_CAUSAL_ONLY = {"rwkv_time_mix", "memory_attention"}


def make(name: str, causal: bool, *overrides: str):
    cfg = load([f"model={name}", "profile=smoke", "model.d_model=32", "model.budget_params=null",
                "model.dropout=0.0", *overrides], task_bound=False)
    if causal and not registry.backbone_class(cfg.model.backbone).causal_capable:
        pytest.skip(f"{name} cannot run causally")
    torch.manual_seed(0)
    return build_backbone(cfg.model, causal)


def parts(backbone) -> set[str]:
    """The backbone's registry name plus, for a stack, its block names."""
    return {backbone.registry_name} | {b.registry_name for b in getattr(backbone, "blocks", [])}


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_layers,kernel", [(1, 3), (3, 3), (2, 5)])
def test_undilated_tcn_sees_one_plus_n_times_k_minus_one(n_layers, kernel, causal):
    bb = make("tcn", causal, f"model.n_layers={n_layers}", f"model.kernel_size={kernel}", "model.dilation_base=1")
    expected = 1 + n_layers * (kernel - 1)
    rf = measure(bb, 4 * expected)
    assert rf["tokens"] == rf["span"] == expected and not rf["full"]
    # causal: t - span + 1 .. t; centred kernels of odd width reach equally far both ways
    assert (rf["left"], rf["right"]) == ((expected - 1, 0) if causal else ((expected - 1) // 2,) * 2)


@pytest.mark.parametrize("overrides", [[], ["model.n_layers=5", "model.dilation_cycle=3", "model.kernel_size=2"]])
def test_dilated_tcn_matches_its_analytic_receptive_field(overrides):
    cfg = load(["model=tcn", "model.d_model=16", "model.budget_params=null", "model.dropout=0.0", *overrides])
    bb = build_backbone(cfg.model, causal=True)
    rf = measure(bb, bb.receptive_field + 7)
    assert rf["tokens"] == rf["span"] == rf["left"] + 1 == bb.receptive_field


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_layers,window", [(1, 8), (3, 5)])
def test_sliding_window_grows_by_window_per_layer(n_layers, window, causal):
    # sparse_attention.py: query t sees keys t-w..t (causal) or t-w..t+w, so each layer reaches w further.
    bb = make("local-attention", causal, f"model.n_layers={n_layers}", f"model.blocks.sliding_window.window={window}")
    reach = n_layers * window
    rf = measure(bb, 4 * reach + 2)
    assert rf["tokens"] == rf["span"] == 1 + reach * (1 if causal else 2)
    assert rf["left"] == reach and not rf["full"]


def test_causal_longformer_adds_its_global_tokens_to_the_window():
    # Global tokens attend only to earlier keys when causal, so they carry nothing from the middle:
    # the influencing positions are the n_global leading ones plus the stacked window before t.
    n_layers, window, n_global = 2, 6, 2
    bb = make("longformer", True, f"model.n_layers={n_layers}", f"model.blocks.longformer.window={window}",
              f"model.blocks.longformer.n_global={n_global}")
    length = 4 * n_layers * window
    rf = measure(bb, length)
    assert rf["tokens"] == n_global + 1 + n_layers * window
    assert rf["span"] == length and not rf["full"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("causal", [True, False])
def test_every_model_measures_a_span_and_global_ones_are_full(name, causal):
    length = 96  # longer than the smoke profile's windows, short enough for RNN gradients to stay non-zero
    bb = make(name, causal)
    rf = measure(bb, length)
    assert 1 <= rf["tokens"] <= rf["span"] <= length and rf["measured_at"] == length
    assert rf["left"] + 1 + rf["right"] == rf["span"]
    if bb.causal:
        assert rf["position"] == length - 1 and rf["right"] == 0
    found = parts(bb)
    global_ = found & GLOBAL_BOTH_WAYS or (bb.causal and found & GLOBAL_CAUSAL_ONLY)
    if global_:
        assert rf["full"], f"{name} is global by construction ({sorted(found)}) but measured {rf}"


def test_measure_leaves_the_backbone_untouched():
    bb = make("transformer", True).train()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    measure(bb, 16)
    assert bb.training and all(v.dtype == torch.float32 for v in bb.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())
    assert all(p.grad is None for p in bb.parameters())
