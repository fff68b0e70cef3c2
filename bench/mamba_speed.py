"""Mamba's train throughput against the Transformer's, per sequence length, side by side in one process.

Both models are sized with `build_sized` to the same backbone budget (default 500k, the cpu profile's)
and trained as in bench/train_throughput.py: fp32, causal, backbone only, one step = forward, MSE to a
fixed random target, backward and AdamW, every step `--tokens-per-step` tokens (batch = that // n).
The candidates of a length take turns, step by step, `--repeats` times after `--warmup` steps each, so
that a load from other processes on a shared machine slows them alike; the medians are compared.

`--baseline REV` adds Mamba as the code at git revision REV computes it (its pipeline/models/ssm.py,
loaded under another module name, with this revision's weights): the before and after of a change.

    python -m bench.mamba_speed [--lengths 64 256 1024 2048 4096] [--baseline HEAD~1] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from unittest import mock

import torch

from bench import write_results
from bench.train_throughput import train_step
from pipeline.config import load
from pipeline.measure.env import fingerprint
from pipeline.models.base import count_params
from pipeline.models.sizing import build_sized

REPO = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "mamba_speed.json"
SCHEMA_VERSION = 1


def ssm_at(rev: str) -> types.ModuleType:
    """pipeline/models/ssm.py as of git revision `rev`, as a private module. Its block decorators are
    no-ops while it loads: the registry holds this revision's classes under the same names."""
    source = subprocess.run(["git", "show", f"{rev}:pipeline/models/ssm.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"bench_ssm_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up while it loads
    with mock.patch("pipeline.models.registry.register_block", lambda *a, **k: (lambda cls: cls)):
        exec(compile(source, f"{rev}:pipeline/models/ssm.py", "exec"), module.__dict__)
    return module


def as_of(backbone: torch.nn.Module, module: types.ModuleType) -> torch.nn.Module:
    """The backbone's Mamba blocks compute as `module`'s classes do, with the same parameters."""
    for block in backbone.blocks:
        if block.registry_name == "mamba":
            block.__class__ = module.Mamba
            for ssm in (block.fwd, block.bwd):
                if ssm is not None:
                    ssm.__class__ = module.SelectiveSSM
    return backbone


def build(name: str, budget: int) -> tuple[torch.nn.Module, int]:
    cfg = load([f"model={name}", f"model.budget_params={budget}"]).model
    torch.manual_seed(0)
    backbone, sizing = build_sized(cfg, causal=True)
    return backbone.train(), sizing["d_model"]  # train mode: dropout costs time in training too


def measure_length(candidates: dict, length: int, args) -> dict:
    """Median seconds per step of each candidate at `length`, the candidates taking turns."""
    batch = max(1, args.tokens_per_step // length)
    gen = torch.Generator().manual_seed(length)
    steps = {}
    for name, backbone in candidates.items():
        x = torch.randn(batch, length, backbone.d_model, generator=gen)
        target = torch.randn(batch, length, backbone.d_model, generator=gen)
        steps[name] = train_step(backbone, torch.optim.AdamW(backbone.parameters(), lr=1e-4), x, target)
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    row = {"length": length, "batch": batch, "tokens_per_s": {}, "step_s": {}, "ratio_to_transformer": {}}
    for name, t in times.items():
        row["step_s"][name] = round(statistics.median(t), 4)
        row["tokens_per_s"][name] = round(batch * length / statistics.median(t), 1)
    for name in times:
        if name != "transformer":
            row["ratio_to_transformer"][name] = round(row["tokens_per_s"][name] / row["tokens_per_s"]["transformer"], 3)
    return row


def markdown(report: dict) -> str:
    names = [n for n in report["models"] if n != "transformer"]
    env = report["env"]
    lines = [f"Train tokens/s, Mamba vs Transformer, {report['budget_params']:,} backbone parameters each, "
             f"{report['tokens_per_step']:,} tokens per step (forward + backward + AdamW, fp32, causal, backbone "
             f"only), candidates interleaved, median of {report['repeats']}; {env['device']} ({env['cpu']}, "
             f"{report['threads']} threads; 1-min load average {report['load_avg_1min']['start']:.1f} at start, "
             f"{report['load_avg_1min']['end']:.1f} at end)", "",
             "| n | batch | transformer | " + " | ".join(names) + " | "
             + " | ".join(f"{n} / transformer" for n in names) + " |",
             "|---:|---:|---:|" + "---:|" * (2 * len(names))]
    for row in report["rows"]:
        tps = row["tokens_per_s"]
        lines.append(f"| {row['length']} | {row['batch']} | {tps['transformer']:,.0f} | "
                     + " | ".join(f"{tps[n]:,.0f}" for n in names) + " | "
                     + " | ".join(f"{row['ratio_to_transformer'][n]:.2f}×" for n in names) + " |")
    lines += ["", "Models: " + "; ".join(f"{n}: d_model {m['d_model']}, {m['params']:,} parameters"
                                          + (f", code of {m['code']}" if m.get("code") else "")
                                          for n, m in report["models"].items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[64, 256, 1024, 2048, 4096])
    parser.add_argument("--budget", type=int, default=500_000, help="backbone parameters of both models")
    parser.add_argument("--tokens-per-step", type=int, default=4096, help="batch = this // n (at least 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per candidate and length")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per candidate and length")
    parser.add_argument("--baseline", metavar="REV", help="also time Mamba as the code at git revision REV has it")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads; 0 = torch's default. On a machine others load, 1: an op with "
                             "two threads waits for whichever of them the scheduler delays")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON path; the markdown table goes next to it (.md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    candidates, models = {}, {}
    for key, name, code in [("transformer", "transformer", None), ("mamba", "mamba", None)] + \
            ([(f"mamba@{args.baseline}", "mamba", args.baseline)] if args.baseline else []):
        backbone, d_model = build(name, args.budget)
        candidates[key] = as_of(backbone, ssm_at(code)) if code else backbone
        models[key] = {"d_model": d_model, "params": count_params(backbone), "code": code}
    report = {"schema_version": SCHEMA_VERSION, "budget_params": args.budget, "tokens_per_step": args.tokens_per_step,
              "repeats": args.repeats, "warmup": args.warmup, "threads": torch.get_num_threads(),
              "step": "forward + MSE to a fixed random target + backward + AdamW; fp32; causal; backbone only",
              "env": fingerprint(torch.device("cpu")), "models": models, "rows": [],
              "load_avg_1min": {"start": os.getloadavg()[0]}}
    t0 = time.perf_counter()
    for length in args.lengths:
        row = measure_length(candidates, length, args)
        report["rows"].append(row)
        ratios = "  ".join(f"{k}/transformer {v:.2f}" for k, v in row["ratio_to_transformer"].items())
        print(f"n={length:5d}  " + "  ".join(f"{k} {v:,.0f} tok/s" for k, v in row["tokens_per_s"].items())
              + "  " + ratios, flush=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["load_avg_1min"]["end"] = os.getloadavg()[0]
    write_results(report, args.out, markdown(report))
    return report


if __name__ == "__main__":
    main()
