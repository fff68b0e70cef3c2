"""measure stage: speed and memory of one trained (task, model) at the task's lengths, on this machine.

Apart from evaluate because its numbers depend on the machine and vary from run to run: evaluate's
outputs (eval.json, metrics.json, examples/) are byte-identical for the same inputs, so a fresh
clone's `dvc repro` reproduces dvc.lock. speed.json is a measurement, committed with the
fingerprint of the machine that made it; its deps are the checkpoint and the code, so DVC measures
again when either changes, and a fresh clone that re-trains the same bytes keeps the committed
numbers. `dvc repro -f -s measure@<model>-<task>` measures again on your machine.

Writes runs/<task>/<model>/speed.json (pipeline/artifacts.py `SpeedResult`), which the evaluate stage
logs into the run's W&B run with its test results:
    infer   forward passes of eval.speed_batch_size real test sequences at each bucket's upper length
            (up to eval.max_speed_len or task.max_len): tokens/s and latency (median of
            eval.speed_repeats), peak memory (pipeline/measure/memory.py)
    train   one training step (forward, loss, backward, AdamW) at data.batch_size x task.max_len, on
            a copy of the trained weights: tokens/s, step time, peak memory
    env     torch, device, CPU, threads, and the SDPA kernel one forward at task.max_len ran
"""
from __future__ import annotations

import copy

import torch

from pipeline import buckets, paths
from pipeline.artifacts import SpeedResult
from pipeline.measure import env, kernels, memory, speed
from pipeline.measure.task_batch import task_batch, test_stream
from pipeline.schema import Config
from pipeline.tasks.checkpoint import load_best


def measure_infer(module, cfg: Config, lengths: list[int], device: torch.device) -> dict:
    stream = test_stream(cfg)
    bsz = cfg.eval.speed_batch_size
    out = {"lengths": lengths, "batch_size": bsz, "device": str(device),
           "infer_tokens_per_s": [], "latency_ms": [], "peak_mem_mb": []}
    for length in lengths:
        batch = task_batch(cfg, stream, length, bsz, device)

        def forward():
            with torch.no_grad():
                return module.per_example(batch)

        seconds = speed.median_seconds(forward, device, repeats=cfg.eval.speed_repeats)
        out["infer_tokens_per_s"].append(round(bsz * length / seconds, 1))
        out["latency_ms"].append(round(seconds * 1e3, 3))
        mb = memory.peak_memory_mb(forward, device) if cfg.eval.measure_memory else None
        out["peak_mem_mb"].append(None if mb is None else round(mb, 3))
    return out


def measure_train(module, cfg: Config, device: torch.device) -> dict:
    """The cost of a training step at the task's shapes: unlike the wall time of the train stage
    (in logs/ and W&B), it leaves out data loading, validation and logging."""
    trainee = copy.deepcopy(module).train()
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))
    length, bsz = cfg.task.max_len, cfg.data.batch_size
    batch = task_batch(cfg, test_stream(cfg), length, bsz, device)

    def step():
        loss_terms, weights, _, _ = trainee.per_example(batch)
        loss = (loss_terms * weights).sum() / weights.sum().clamp(min=1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    seconds = speed.median_seconds(step, device, repeats=cfg.eval.speed_repeats)
    mb = memory.peak_memory_mb(step, device) if cfg.eval.measure_memory else None
    return {"length": length, "batch_size": bsz, "tokens_per_s": round(bsz * length / seconds, 1),
            "step_ms": round(seconds * 1e3, 3), "peak_mem_mb": None if mb is None else round(mb, 3)}


def attention_probe(module, cfg: Config, device: torch.device) -> dict:
    """The SDPA kernel(s) one forward at task.max_len ran, and whether it built an n x n score matrix
    (pipeline/measure/kernels.py). Batch 1: the kernel choice does not depend on the batch size."""
    batch = task_batch(cfg, test_stream(cfg), cfg.task.max_len, 1, device)
    with torch.no_grad():
        return kernels.probe(lambda: module.per_example(batch), cfg.task.max_len)


def main(cfg: Config) -> None:
    torch.set_float32_matmul_precision("high")
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
    module = load_best(cfg, cfg.seeds[0]).to(device)  # speed does not depend on the seed
    longest = cfg.eval.max_speed_len or cfg.task.max_len
    lengths = [e for e in buckets.edges(longest, cfg.data.bucket_min) if e <= longest]
    probe = attention_probe(module, cfg, device)
    result = SpeedResult(task=cfg.task.name, model=cfg.model.name, profile=cfg.profile,
                         env={**env.fingerprint(device, attention_kernel=probe["summary"]), "attention_probe": probe},
                         infer=measure_infer(module, cfg, lengths, device), train=measure_train(module, cfg, device))
    path = paths.run_dir(cfg) / paths.SPEED_RESULT
    result.write(path)
    infer, train = result.infer, result.train
    print(f"[measure] {cfg.task.name}/{cfg.model.name}: inference {infer['infer_tokens_per_s'][-1]:.0f} tokens/s at "
          f"length {infer['lengths'][-1]}, batch {infer['batch_size']}; training {train['tokens_per_s']:.0f} tokens/s "
          f"at {train['batch_size']} x {train['length']} -> {paths.relative(path)}")
