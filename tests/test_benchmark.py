"""The benchmark stage: a real (tiny) length sweep, its caps, and its DVC deps in params.yaml."""
import json
import math

import pytest

from pipeline.config import ConfigError, load
from pipeline.measure import scaling, sweep

SMOKE = ["profile=smoke", "bench.threads=1"]


def smoke_cfg(model: str, *overrides: str):
    return load([f"model={model}", *SMOKE, *overrides], task_bound=False)


def test_smoke_sweep_measures_every_cell_and_fits_exponents():
    result = sweep.run(smoke_cfg("transformer"), log=lambda *_: None).to_dict()
    assert [c["length"] for c in result["cells"]] == [32, 64, 128]
    for c in result["cells"]:
        assert c["status"] == "ok" and c["batch"] * c["length"] == c["tokens"] == 128
        for key in ("train_s", "infer_s", "train_peak_mb", "infer_backbone_eager_peak_mb", "infer_peak_mb",
                    "infer_backbone_peak_mb", "forward_flops_per_token", "train_mfu", "infer_mfu"):
            assert c[key] > 0, key
        assert c["infer_backbone_peak_mb"] <= c["infer_peak_mb"]  # the backbone is part of the whole
        assert c["attention"]["summary"] == "flash_attention_for_cpu"
        assert c["train_runs"] >= 1 and c["train_iqr_s"] >= 0
    peak = result["matmul_peak_flops"]
    assert peak["fp32"] > 1e9 and peak["fp32"] == max(peak["fp32_by_kernel"].values())
    assert all(c["train_mfu"] < 1 and c["infer_mfu"] < 1 for c in result["cells"])  # a peak is not exceeded
    decode = result["decode"]
    assert decode["status"] == "ok" and decode["tokens_generated"] == 128
    assert [c["context"] for c in decode["cells"]] == [32, 64, 128]
    assert all(c["latency_ms"] > 0 for c in decode["cells"])
    assert result["claim"]["time_exponent"] == 2 and result["fits"]["train_time"]["fit"]["points"] == 3
    # the same train step at batch 1 at every n >= fit_min_len (32 on smoke: all three), fitted on its own
    assert result["config"]["bench"]["fit_min_len"] == 32
    for c in result["cells"]:
        assert c["train_s_batch1"] > 0 and c["train_batch1_runs"] >= 1 and c["train_batch1_wall_s"] >= 0
    assert result["cells"][-1]["batch"] == 1 and result["cells"][-1]["train_s_batch1"] == result["cells"][-1]["train_s"]
    fixed = result["fits"]["train_time_fixed_batch"]
    assert fixed["fit"]["points"] == 3 and fixed["claimed"] == 2 and fixed["verdict"]
    assert result["params"]["backbone"] < result["params"]["total"]


def test_bidirectional_model_has_no_decoding():
    result = sweep.run(smoke_cfg("kim-cnn"), log=lambda *_: None).to_dict()
    assert not result["causal"] and result["decode"]["cells"] == []
    assert all(c["status"] == "ok" for c in result["cells"])


def test_memory_cap_records_oom_and_the_sweep_goes_on():
    # 0.01 MB of live tensors: the first cell runs out of memory, the rest are skipped, nothing raises.
    cfg = smoke_cfg("lstm", "bench.max_mem_gb=0.00001")
    cells = sweep.run_cells(*_model(cfg), log=lambda *_: None)
    assert cells[0]["status"] == "oom" and "over the cap" in cells[0]["detail"]
    assert all(c["status"].startswith("skipped: n=32 already hit oom") for c in cells[1:])
    assert not any("train_s_batch1" in c for c in cells)  # a cell that did not run has no batch-1 time


def test_cells_predicted_over_a_cap_are_skipped_without_running():
    cfg = smoke_cfg("transformer", "bench.max_mem_gb=1", "bench.cell_timeout_s=10")
    # memory quadruples per doubling (an n x n score matrix): 256 MB at n=1024 predicts 1 GB at 2048
    done = [{"length": n, "status": "ok", "train_peak_mb": 256.0 * (n / 1024) ** 2, "train_s": 0.1}
            for n in (512, 1024)]
    assert sweep._skip_reason(done, 2048, cfg) is None  # exactly 1 GB: not over
    reason = sweep._skip_reason(done, 4096, cfg)
    assert reason.startswith("skipped: predicted over cap (4.00 GB > bench.max_mem_gb=1)")
    slow = [{"length": n, "status": "ok", "train_peak_mb": 1.0, "train_s": 2.0 * n / 1024} for n in (512, 1024)]
    assert sweep._skip_reason(slow, 8192, cfg).startswith("skipped: predicted over time cap (16.0 s")


def test_timeout_is_recorded():
    cfg = smoke_cfg("lstm", "bench.cell_timeout_s=0.000001")
    cells = sweep.run_cells(*_model(cfg), log=lambda *_: None)
    assert cells[0]["status"] == "timeout" and "bench.cell_timeout_s" in cells[0]["detail"]
    assert cells[1]["status"] == "skipped: n=32 already hit timeout"
    assert not any("train_s_batch1" in c for c in cells)


def test_batch1_series_only_from_fit_min_len_and_reused_at_batch_1():
    cfg = smoke_cfg("lstm", "bench.fit_min_len=64")
    cells = sweep.run_cells(*_model(cfg), log=lambda *_: None)
    assert [c["batch"] for c in cells] == [4, 2, 1] and all(c["status"] == "ok" for c in cells)
    assert "train_s_batch1" not in cells[0]  # n=32 < fit_min_len: not timed
    assert cells[1]["train_s_batch1"] > 0 and cells[1]["train_batch1_wall_s"] > 0  # timed at batch 1
    assert cells[2]["train_s_batch1"] == cells[2]["train_s"] and cells[2]["train_batch1_wall_s"] == 0  # reused
    fits = sweep.fit_all(cells, {"cells": []}, None, 64)
    assert fits["train_time_fixed_batch"]["fit"]["points"] == 2  # one sequence per cell: not divided by batch
    assert fits["train_time_fixed_batch"]["local"][0]["exponent"] == pytest.approx(
        math.log(cells[2]["train_s"] / cells[1]["train_s_batch1"]) / math.log(2))


@pytest.mark.usefixtures("one_thread")
def test_decode_is_fitted_from_its_own_start_with_an_iqr_per_context():
    """One generation gives every context, so decode's fit may start below the time fits' (#21: the cpu
    profile's decode exponents had 3 points from 1K; from 256 they have 5)."""
    cfg = smoke_cfg("lstm", "bench.fit_min_len=128", "bench.decode_fit_min_len=32")
    model, _, device, _ = _model(cfg)
    decode = sweep.measure_decode(model, [32, 64, 128], cfg, device)
    assert [c["window"] for c in decode["cells"]] == [32, sweep.DECODE_WINDOW, sweep.DECODE_WINDOW]
    assert all(0 <= c["latency_iqr_ms"] and c["latency_ms"] > 0 for c in decode["cells"])
    # every context timed again in each round, from the state saved DECODE_ROUND_TOKENS tokens before it
    assert decode["rounds"] == sweep.DECODE_ROUNDS == 5
    assert all(len(c["rounds_ms"]) == 5 and c["round_tokens"] == sweep.DECODE_ROUND_TOKENS for c in decode["cells"])
    assert all(c["latency_ms"] == sorted(c["rounds_ms"])[2] and c["stream_latency_ms"] > 0 for c in decode["cells"])
    claim = model.backbone.complexity
    own = sweep.fit_all([], decode, claim, cfg.bench.fit_min_len, cfg.bench.decode_fit_min_len)["decode_latency"]
    assert own["fit"]["points"] == 3 and own["fit"]["lengths"] == [32, 128] and own["claimed"] == 0
    assert own["fit"]["rounds"] == 5  # the interval over the rounds' slopes, widened by DECODE_SLOPE_SD
    assert own["fit"]["hi"] - own["fit"]["lo"] >= 2 * 1.96 * scaling.DECODE_SLOPE_SD
    assert sweep.fit_all([], decode, claim, cfg.bench.fit_min_len)["decode_latency"]["fit"] is None  # 128 alone


@pytest.mark.parametrize("profile", ["cpu", "cpu-full"])
def test_cpu_profiles_fit_decode_on_at_least_five_contexts(profile):
    from pipeline.measure.scaling import MIN_POINTS

    cfg = load(["model=lstm", f"profile={profile}"], task_bound=False)
    b = cfg.bench
    contexts = [n for n in sweep.sweep_lengths(cfg) if b.decode_fit_min_len <= n <= b.decode_max_len]
    assert contexts == [256, 512, 1024, 2048, 4096] and len(contexts) >= MIN_POINTS + 1


@pytest.mark.usefixtures("one_thread")  # bench.threads=1 sets torch's threads in this process; restored after
def test_stage_fails_naming_the_model_when_no_cell_runs(tmp_path, capsys):
    from pipeline.cli import main  # in-process: `python -m pipeline` is this call and sys.exit

    with pytest.raises(SystemExit) as exited:
        main(["benchmark", "model=tcn", *SMOKE, "bench.max_mem_gb=0.00001", f"paths.bench={tmp_path}"])
    assert exited.value.code == 1
    assert "benchmark of model 'tcn': no cell could be measured" in capsys.readouterr().err
    assert not (tmp_path / "tcn.json").exists()


@pytest.mark.usefixtures("one_thread")
def test_stage_writes_the_json(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["benchmark", "model=lstm", *SMOKE, f"paths.bench={tmp_path}"]) == 0
    result = json.loads((tmp_path / "lstm.json").read_text())
    assert result["artifact"] == "bench_result" and result["schema"] == 1 and result["model"] == "lstm"
    assert "[benchmark] lstm: 3/3 cells" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("bench.tokens_per_batch=64", "bench.tokens_per_batch=64 is below bench.max_len=128"),
    ("bench.max_len=100", "must be powers of two"),
    ("bench.max_mem_gb=0", "bench.max_mem_gb must be positive"),
    ("bench.nope=1", "unknown key 'bench.nope'"),
])
def test_bad_bench_settings_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load(["model=lstm", "profile=smoke", override])


def test_bench_code_names_only_the_models_own_modules():
    """(dvc.yaml's entries are checked against this in test_code_deps.py)"""
    from pipeline.code_deps import extra_files

    assert extra_files("benchmark", "lstm") == ["pipeline/models/rnn.py"]
    mamba = {f.removeprefix("pipeline/") for f in extra_files("benchmark", "mamba")}
    assert "models/ssm.py" in mamba and "models/rwkv.py" not in mamba and "models/sparse_attention.py" not in mamba


def _model(cfg):
    device = sweep.device_of(cfg)
    model, _ = sweep.build(cfg, device)
    return model, cfg, device, 1e10


def test_adaptive_timing_calls_once_per_run_and_stops_on_a_steady_median():
    """Every call is a timed run (no hidden warm-ups), four steady runs suffice, and a slow callable
    stops once the time budget is spent."""
    import time

    import torch

    from pipeline.measure.speed import adaptive_timing

    calls = []
    steady = adaptive_timing(lambda: calls.append(time.sleep(0.01)), torch.device("cpu"), max_run_time=5.0)
    assert steady["runs"] == len(calls) == 4
    assert 0.01 <= steady["median_s"] < 0.05 and steady["iqr_s"] < 0.1 * steady["median_s"]
    calls.clear()
    slow = adaptive_timing(lambda: calls.append(time.sleep(0.06)), torch.device("cpu"), max_run_time=0.1)
    assert slow["runs"] == len(calls) == 2


@pytest.mark.usefixtures("one_thread")
def test_a_decode_round_continues_from_the_saved_state_exactly():
    """A round restores a copy of the state saved before context n, so the tokens it generates are the ones
    the generation produced there (greedy decoding is deterministic): the round times the same work."""
    import torch

    cfg = smoke_cfg("transformer")
    model, _, device, _ = _model(cfg)
    generated = []
    step = model.backbone.step

    def recording(x_t, state):
        y, state = step(x_t, state)
        generated.append(model.head(y).argmax(-1).item())
        return y, state

    model.backbone.step = recording
    decode = sweep.measure_decode(model, [32, 64], cfg, device, rounds_count=2)
    first, rounds = generated[:64], generated[64:]
    assert decode["tokens_generated"] == 64 and len(rounds) == 2 * 2 * sweep.DECODE_ROUND_TOKENS
    window = {32: first[16:32], 64: first[48:64]}
    chunks = [rounds[i:i + 16] for i in range(0, len(rounds), 16)]
    assert all(chunk in (window[32], window[64]) for chunk in chunks)
    assert chunks.count(window[32]) == chunks.count(window[64]) == 2 or window[32] == window[64]
    assert torch.is_grad_enabled()
