"""Parallel training form vs token-by-token recurrence, for the linear-time blocks.

Each block alone (causal, batch 1, d_model 128) reads a length-n sequence twice: once with its
parallel forward (chunked scan / FFT / chunked linear attention), once as n calls of `step`. Both
compute the same outputs (tests/test_linear_time.py); the ratio is what the parallel form buys.

    python -m bench.recurrence_vs_parallel [--length 4096] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pipeline.config import load
from pipeline.measure.env import fingerprint
from pipeline.measure.speed import median_seconds
from pipeline.models import registry
from pipeline.models.stack import layer_plan

# block -> the model config its settings (chunk_size, d_state, ...) come from
BLOCKS = {"linear_attention": "linear-transformer", "mamba": "mamba", "s4d": "s4d", "rwkv_time_mix": "rwkv"}
OUT = Path(__file__).parent / "results" / "recurrence_vs_parallel.json"


def build(block: str, d_model: int, device: torch.device):
    cfg = load([f"model={BLOCKS[block]}", f"model.d_model={d_model}", "model.budget_params=null",
                "model.dropout=0.0"]).model
    settings = dict(layer_plan(cfg))[block]
    return registry.block_class(block)(cfg, True, settings).to(device).eval()


@torch.no_grad()
def measure(block: str, length: int, d_model: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    module = build(block, d_model, device)
    x = torch.randn(1, length, d_model, device=device)

    def recurrent():
        state = module.init_state(1, device)
        for t in range(length):
            _, state = module.step(x[:, t], state)

    parallel_s = median_seconds(lambda: module(x), device, repeats=repeats, warmup=1)
    recurrent_s = median_seconds(recurrent, device, repeats=1, warmup=0)  # seconds-long already
    return {"block": block, "parallel_s": parallel_s, "recurrent_s": recurrent_s,
            "speedup": recurrent_s / parallel_s, "parallel_tokens_per_s": length / parallel_s,
            "recurrent_tokens_per_s": length / recurrent_s}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=list(BLOCKS))
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads; 1 keeps timings stable on a shared machine, 0 = torch's default")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = [measure(b, args.length, args.d_model, args.repeats, device) for b in args.blocks]
    report = {"length": args.length, "batch": 1, "d_model": args.d_model, "env": fingerprint(device), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"n = {args.length}, batch 1, d_model {args.d_model}, {report['env']['device']}\n")
    print("| block | parallel (s) | step loop (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['block']} | {r['parallel_s']:.3f} | {r['recurrent_s']:.2f} | {r['speedup']:.1f}× |")
    return report


if __name__ == "__main__":
    main()
