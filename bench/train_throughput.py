"""Training throughput of every causal backbone at one parameter budget, per sequence length.

Each causal-capable model in conf/model/ is sized with `build_sized` to the same backbone budget
(default 500k, the cpu profile's) and trained in fp32 on fixed random inputs: one step is forward,
MSE loss to a fixed random target, backward and AdamW. The backbone alone, without embedding or LM
head: their cost depends on the vocabulary, not on the architecture. Every step holds the same
number of tokens (batch = tokens_per_step // n), so columns compare the cost of a token at length n.
One warm-up step, then the median of `--repeats` steps. A cell is null with a reason when it runs
out of memory, or when one step exceeds --max-step-seconds (then the longer lengths are skipped).

    python -m bench.train_throughput [--models tcn mamba] [--lengths 256 1024 4096] [--budget 500000]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import write_results
from pipeline.config import choices, load, model_backbone
from pipeline.measure.env import fingerprint
from pipeline.measure.speed import median_seconds
from pipeline.models import registry
from pipeline.models.base import count_params
from pipeline.models.sizing import build_sized

OUT = Path(__file__).parent / "results" / "train_throughput.json"
SCHEMA_VERSION = 1


def is_oom(error: BaseException) -> bool:
    # CPU allocation failures surface as a plain RuntimeError from the default allocator.
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error) \
        or "out of memory" in str(error)


def train_step(backbone, optimizer, x, target):
    def step():
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(backbone(x), target).backward()
        optimizer.step()

    return step


def measure_cell(backbone, length: int, tokens_per_step: int, repeats: int, max_step_s: float, device) -> dict:
    batch = max(1, tokens_per_step // length)
    cell = {"length": length, "batch": batch, "tokens_per_s": None, "step_s": None, "reason": None}
    try:
        gen = torch.Generator().manual_seed(length)
        x = torch.randn(batch, length, backbone.d_model, generator=gen).to(device)
        target = torch.randn(batch, length, backbone.d_model, generator=gen).to(device)
        optimizer = torch.optim.AdamW(backbone.parameters(), lr=1e-4)
        step = train_step(backbone, optimizer, x, target)
        t0 = time.perf_counter()
        step()  # warm-up (allocations, AdamW state), and the probe for the time cap
        first = time.perf_counter() - t0
        if first > max_step_s:
            cell["reason"] = f"one step took {first:.1f} s > --max-step-seconds {max_step_s:g}"
            return cell
        seconds = median_seconds(step, device, repeats=repeats, warmup=0)
    except (RuntimeError, torch.OutOfMemoryError) as e:
        if not is_oom(e):
            raise
        cell["reason"] = "out of memory"
        return cell
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    cell.update(tokens_per_s=round(batch * length / seconds, 1), step_s=round(seconds, 4))
    return cell


def measure_model(name: str, args, device) -> dict:
    cfg = load([f"model={name}", f"model.budget_params={args.budget}"]).model
    torch.manual_seed(0)
    backbone, sizing = build_sized(cfg, causal=True)
    backbone = backbone.to(device).train()  # train mode: dropout costs time in training too
    row = {"backbone": cfg.backbone, "d_model": sizing["d_model"], "params": count_params(backbone), "cells": []}
    too_slow = None
    for length in args.lengths:
        if too_slow is not None:  # at a fixed token count, a step only gets slower with n
            row["cells"].append({"length": length, "batch": max(1, args.tokens_per_step // length),
                                 "tokens_per_s": None, "step_s": None,
                                 "reason": f"skipped: n = {too_slow} already exceeded --max-step-seconds"})
            continue
        cell = measure_cell(backbone, length, args.tokens_per_step, args.repeats, args.max_step_seconds, device)
        if cell["reason"] and cell["reason"] != "out of memory":
            too_slow = length
        row["cells"].append(cell)
        shown = f"{cell['tokens_per_s']:,.0f} tok/s" if cell["tokens_per_s"] else cell["reason"]
        print(f"  {name:20s} n={length:5d}  {shown}", flush=True)
    return row


def markdown(report: dict) -> str:
    lengths = report["lengths"]
    lines = [f"Train step tokens/s (forward + backward + AdamW, fp32, causal, backbone only, MSE loss), "
             f"{report['budget_params']:,} backbone parameters, {report['tokens_per_step']:,} tokens per step, "
             f"{report['env']['device']} ({report['env']['cpu']}, {report['env']['threads']} threads; 1-min load average "
             f"{report['load_avg_1min']['start']:.1f} at start, {report['load_avg_1min']['end']:.1f} at end)", "",
             "| model | d_model | params | " + " | ".join(f"n={n}" for n in lengths) + " |",
             "|---|---:|---:|" + "---:|" * len(lengths)]
    notes = []
    for name, row in report["models"].items():
        cells = []
        for c in row["cells"]:
            if c["tokens_per_s"] is not None:
                cells.append(f"{c['tokens_per_s']:,.0f}")
            else:
                notes.append(f"{name} at n={c['length']}: {c['reason']}")
                cells.append(f"— [{len(notes)}]")
        lines.append(f"| {name} | {row['d_model']} | {row['params']:,} | " + " | ".join(cells) + " |")
    lines += [""] + [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    if report["skipped_models"]:
        lines.append("Not causal, so not benchmarked: " + ", ".join(f"{m} ({why})" for m, why in
                                                                   report["skipped_models"].items()))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=choices("model"), choices=choices("model"))
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--budget", type=int, default=500_000, help="backbone parameters of every model")
    parser.add_argument("--tokens-per-step", type=int, default=4096,
                        help="batch = this // n (at least 1); 4096 keeps the full run to minutes on 2 cores")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the warm-up; the median is kept")
    parser.add_argument("--max-step-seconds", type=float, default=20.0,
                        help="a cell whose warm-up step takes longer is null, and longer lengths are skipped")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = torch's default")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON path; the markdown table goes next to it (.md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {"schema_version": SCHEMA_VERSION, "budget_params": args.budget, "tokens_per_step": args.tokens_per_step,
              "lengths": args.lengths, "repeats": args.repeats, "max_step_seconds": args.max_step_seconds,
              "step": "forward + MSE to a fixed random target + backward + AdamW; fp32; causal; backbone only",
              "env": fingerprint(device), "models": {}, "skipped_models": {},
              # other processes on a shared machine skew timings: keep their load next to the numbers
              "load_avg_1min": {"start": os.getloadavg()[0]}}
    t0 = time.perf_counter()
    for name in args.models:
        backbone_name = model_backbone(name)  # no build: load() rejects a bidirectional-only model on the default (LM) task
        if not registry.backbone_class(backbone_name).causal_capable:
            report["skipped_models"][name] = f"{backbone_name} is bidirectional only"
            continue
        report["models"][name] = measure_model(name, args, device)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["load_avg_1min"]["end"] = os.getloadavg()[0]
    write_results(report, args.out, markdown(report))
    return report


if __name__ == "__main__":
    main()
