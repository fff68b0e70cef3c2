"""The attention kernel probe (pipeline/measure/kernels.py) and the CPU attention-dropout rule."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.config import load
from pipeline.measure import env
from pipeline.measure.kernels import probe
from pipeline.models.attention import attention_dropout
from pipeline.models.base import build_backbone

D, N = 32, 256
CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"

pytestmark = pytest.mark.usefixtures("one_thread")


def backbone(model: str, dropout: float = 0.0, causal: bool = True):
    cfg = load([f"model={model}", "model.budget_params=null", f"model.d_model={D}", f"model.dropout={dropout}"])
    torch.manual_seed(0)
    return build_backbone(cfg.model, causal=causal)


def forward(bb):
    x = torch.randn(2, N, D)
    with torch.no_grad():
        return probe(lambda: bb(x), N)


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_eval_runs_the_cpu_fused_kernel(causal):
    result = forward(backbone("transformer", causal=causal).eval())
    assert result["sdpa_kernels"] == [CPU_FLASH] and result["sdpa_calls"] == 2
    assert result["materialized_scores"] is False and result["summary"] == "flash_attention_for_cpu"


def test_math_path_is_reported_as_materialised():
    bb = backbone("transformer").eval()
    with sdpa_kernel(SDPBackend.MATH):
        result = forward(bb)
    assert result["sdpa_kernels"] == ["math"]
    assert result["materialized_scores"] is True and result["summary"] == "math (materialised)"
    assert result["score_tensor"].endswith(f"{N}, {N})")


def test_scores_shorter_than_n_are_not_materialised():
    bb = backbone("transformer").eval()
    x = torch.randn(2, N // 2, D)
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        result = probe(lambda: bb(x), N)
    assert result["summary"] == "math" and result["materialized_scores"] is False


def test_no_attention_reports_none():
    result = forward(backbone("lstm").eval())
    assert result == {"sdpa_calls": 0, "sdpa_kernels": [], "materialized_scores": False, "score_tensor": None,
                      "summary": "none"}


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_weights_and_activations_wider_than_n_are_not_scores(model):
    """At n = 16 < d_model, weights and (B, n, d) activations have both last dims >= n."""
    bb = backbone(model).eval()
    x = torch.randn(2, 16, D)
    with torch.no_grad():
        result = probe(lambda: bb(x), 16)
    assert result["materialized_scores"] is False


def test_training_with_dropout_keeps_the_fused_kernel_on_cpu():
    bb = backbone("transformer", dropout=0.2).train()
    x = torch.randn(2, N, D)
    result = probe(lambda: bb(x).sum().backward(), N)
    assert result["sdpa_kernels"] == [CPU_FLASH] and result["materialized_scores"] is False
    assert bb.drop.p == 0.2  # residual dropout stays


def test_attention_dropout_only_off_on_cpu():
    cpu, meta = torch.empty(1), torch.empty(1, device="meta")
    assert attention_dropout(0.2, cpu, training=True) == 0.0
    assert attention_dropout(0.2, meta, training=True) == 0.2  # any non-CPU device (CUDA) keeps it
    assert attention_dropout(0.2, meta, training=False) == 0.0


def test_fingerprint_takes_the_measured_kernel():
    assert env.fingerprint(attention_kernel="flash_attention_for_cpu")["attention_kernel"] == "flash_attention_for_cpu"
    assert "not probed" in env.fingerprint()["attention_kernel"]


def test_measurement_modes_do_not_import_the_compiler():
    """The memory, kernel and FLOP probes run without importing torch._dynamo (1.4-2 s of every
    evaluate, measure and benchmark process's start-up; nothing here compiles)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from pipeline.measure import flops, kernels, memory\n"
            "m, x = torch.nn.Linear(8, 8), torch.randn(1, 1, 2, 8)\n"
            "assert flops.forward_flops_per_token(lambda: m(x), m, 2) == 2 * 8 * 8\n"
            "assert memory.peak_memory_mb(lambda: m(x), torch.device('cpu')) > 0\n"
            "sdpa = torch.nn.functional.scaled_dot_product_attention\n"
            "assert kernels.probe(lambda: sdpa(x, x, x), 2)['sdpa_calls'] == 1\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
