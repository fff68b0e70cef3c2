"""Is the decode exponent's interval honest between processes? (#21)

The benchmark stage fits each model's decode latency per token against context length and prints a
claim verdict from the fit's 95% interval. This runs the benchmark's own decode measurement
(sweep.measure_decode with the profile's `bench:` settings) for each model in `--processes` separate
Python processes, one after the other, and reports per process the exponent, its interval and the
verdict, and whether the intervals of every pair of processes overlap. Each process also fits the
one-pass reading (each context timed once, in order, during the generation) the way the benchmark did
before the interleaved rounds, so the two designs are compared on the same generations.

    python -m bench.decode_stability [--models mamba,s4d,lstm,transformer] [--processes 3] [--profile cpu]

Writes bench/results/decode_stability.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

OUT = Path(__file__).parent / "results" / "decode_stability"


def one_process(model: str, profile: str) -> dict:
    """Runs in a child process: the benchmark's decode measurement and both fits."""
    import torch

    from pipeline.config import load
    from pipeline.measure import env, scaling, sweep

    cfg = load([f"model={model}", f"profile={profile}"], task_bound=False)
    if cfg.bench.threads:
        torch.set_num_threads(cfg.bench.threads)
    device = torch.device("cpu")
    bench_model, _ = sweep.build(cfg, device)
    contexts = [n for n in sweep.sweep_lengths(cfg) if n <= (cfg.bench.decode_max_len or cfg.bench.max_len)]
    decode = sweep.measure_decode(bench_model, contexts, cfg, device)
    claim = bench_model.backbone.complexity.decode_exponent
    min_len = decode_fit_min_len(profile)
    ok = [c for c in decode["cells"] if c["status"] == "ok"]
    n = [c["context"] for c in ok]
    # the rounds' own interval, without the between-process term the benchmark adds (it was measured here)
    rounds = scaling.fit_exponent_over_rounds(n, [c["rounds_ms"] for c in ok], min_len)
    one_pass = scaling.fit_exponent(n, [c["stream_latency_ms"] for c in ok], min_len)
    return {"model": model, "claimed": claim, "host": env.fingerprint(device),
            "cells": [{k: c[k] for k in ("context", "latency_ms", "rounds_ms", "stream_latency_ms")} for c in ok],
            "rounds": {"fit": rounds, "verdict": scaling.verdict(rounds, claim)},
            "one_pass": {"fit": one_pass, "verdict": scaling.verdict(one_pass, claim)}}


def decode_fit_min_len(profile: str) -> int:
    from pipeline.config import load

    bench = load(["model=lstm", f"profile={profile}"], task_bound=False).bench
    return bench.decode_fit_min_len or bench.fit_min_len


DESIGNS = {"one_pass": "one pass (before)", "rounds": "interleaved rounds",
           "benchmark": "rounds + between-process sd (the benchmark's)"}


def summarise(runs: dict[str, list[dict]], profile: str) -> list[dict]:
    from pipeline.measure import scaling
    from pipeline.report.significance import apart

    min_len = decode_fit_min_len(profile)
    rows = []
    for model, procs in runs.items():
        for design in DESIGNS:
            if design == "benchmark":  # the rounds' fit as the benchmark stage writes it
                fits = [scaling.fit_exponent_over_rounds([c["context"] for c in p["cells"]],
                                                         [c["rounds_ms"] for c in p["cells"]], min_len,
                                                         scaling.DECODE_SLOPE_SD) for p in procs]
                verdicts = [scaling.verdict(f, p["claimed"]) for f, p in zip(fits, procs)]
            else:
                fits = [p[design]["fit"] for p in procs]
                verdicts = [p[design]["verdict"] for p in procs]
            pairs = list(combinations(range(len(fits)), 2))
            rows.append({"model": model, "design": design,
                         "fits": [f"{f['exponent']:+.2f} [{f['lo']:+.2f}, {f['hi']:+.2f}]" for f in fits],
                         "verdicts": [v.split(" (")[0] for v in verdicts],
                         "pairs_overlapping": sum(not apart(fits[i], fits[j]) for i, j in pairs),
                         "pairs": len(pairs)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | design | exponent [95%] per process | verdicts | pairs of intervals overlapping |",
             "|---|---|---|---|---:|"]
    lines += [f"| {r['model']} | {DESIGNS[r['design']]} | "
              f"{' · '.join(r['fits'])} | {' · '.join(r['verdicts'])} | {r['pairs_overlapping']} / {r['pairs']} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mamba,s4d,lstm,transformer")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--summarise", action="store_true", help="rewrite the table from the saved JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_process(args.child, args.profile)))
        return
    if args.summarise:
        saved = json.loads(OUT.with_suffix(".json").read_text())
        write(saved["runs"], saved["profile"], saved["processes"])
        return
    runs: dict[str, list[dict]] = {}
    for p in range(args.processes):
        for model in args.models.split(","):
            out = subprocess.run([sys.executable, "-m", "bench.decode_stability", "--child", model,
                                  "--profile", args.profile], check=True, capture_output=True, text=True).stdout
            runs.setdefault(model, []).append(json.loads(out.strip().splitlines()[-1]))
            r = runs[model][-1]
            print(f"process {p + 1} {model}: rounds {r['rounds']['fit']['exponent']:+.3f} "
                  f"[{r['rounds']['fit']['lo']:+.3f}, {r['rounds']['fit']['hi']:+.3f}] {r['rounds']['verdict']}; "
                  f"one pass {r['one_pass']['fit']['exponent']:+.3f}", flush=True)
    write(runs, args.profile, args.processes)


def write(runs: dict[str, list[dict]], profile: str, processes: int) -> None:
    rows = summarise(runs, profile)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps({"profile": profile, "processes": processes,
                                                    "summary": rows, "runs": runs}, indent=1) + "\n")
    md = (f"# Decode exponent in {processes} separate processes ({profile} profile's bench settings)\n\n"
          "Exponent of decode latency per token over contexts 256-4K, its 95% interval and the claim verdict "
          "(fixed state: 0 ± 0.2; KV cache: 1 ± 0.2), per process, in process order. `python -m "
          "bench.decode_stability`; what it means: docs/verdict-stability.md.\n\n" + table(rows))
    OUT.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
