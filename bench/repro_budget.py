"""`make repro`'s time budget, checkable on any machine: every stage's wall time beside this host's fp32
matmul peak and core count.

Runs `dvc repro` (arguments after `--` go to it, e.g. `-- --force` for every stage) in the current
repository, timestamps each "Running stage" line DVC prints, and writes bench/results/repro_budget.json
and a markdown table: per stage its seconds, and the total both in minutes and in minutes × peak
GFLOP/s, the unit in which the budget holds on a faster or slower host (a host with twice the peak
should take about half the minutes). The record is not a DVC output: a measurement of this machine.

    python -m bench.repro_budget [--label fresh-clone] [-- --force]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import read_params
from pipeline.paths import PARAMS

OUT = Path(__file__).parent / "results"
# The budget: 15 minutes on the reference 2-core host, whose fp32 matmul peak reads ~190 GFLOP/s (177-205 over
# several runs). In minutes x peak GFLOP/s it carries to any host: one with twice the peak has half the minutes.
BUDGET_MINUTES, REFERENCE_GFLOPS = 15.0, 190.0
# Each profile's budget in minutes on the reference host (conf/profile/<profile>.yaml's header): `make repro` runs
# cpu, `make repro-full` cpu-full; smoke and paper have none here.
PROFILE_BUDGET_MINUTES = {"cpu": BUDGET_MINUTES, "cpu-full": 120.0}
STAGE = re.compile(r"Running stage '([^']+)'")
READINGS = 3  # peak readings before and after the repro each; the host reads 133-170 GFLOP/s idle from one to the next
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")


def peak_reading() -> dict:
    """One reading of the fp32 matmul peak, with the load average it was taken under."""
    import torch

    from pipeline.measure.speed import matmul_peak_flops

    torch.set_num_threads(os.cpu_count() or 1)
    peaks = matmul_peak_flops(torch.device("cpu"), max_run_time=2.0)
    return {"fp32_peak_gflops": round(max(peaks.values()) / 1e9, 1),
            "peaks_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
            "load_1min": round(os.getloadavg()[0], 2), "time": time.strftime("%H:%M:%S")}


def host(readings: list[dict]) -> dict:
    """The host's peak is the best of the readings taken before and after the repro: on a shared or
    virtual machine one reading can come out far below the peak (75.8 against 144-169 GFLOP/s minutes
    later on the same idle host; 133-170 from one reading to the next), which would shrink the
    minutes x GFLOP/s and pass any budget."""
    import torch

    from pipeline.measure.env import fingerprint

    best = max(readings, key=lambda r: r["fp32_peak_gflops"])
    return {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "fp32_peak_gflops": best["fp32_peak_gflops"], "peaks_gflops": best["peaks_gflops"],
            "readings": readings, "fingerprint": fingerprint()}


def timed_repro(args: list[str], log) -> tuple[list[dict], list[str], float, int]:
    """[{stage, seconds}] of the stages that ran, the stages DVC skipped (up to date: in a fresh clone
    those whose outputs are committed to git, e.g. measure and benchmark when the checkpoints come out
    byte-identical), total seconds and exit code of `dvc repro args`, its output passed through."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stages: list[dict] = []
    skipped: list[str] = []

    def close(now: float) -> None:
        if stages and "seconds" not in stages[-1]:
            stages[-1]["seconds"] = round(now - stages[-1]["start"], 1)

    for line in proc.stdout:
        log(line.rstrip())
        now = time.perf_counter() - t0
        if found := STAGE.search(line):
            close(now)
            stages.append({"stage": found.group(1), "start": round(now, 1)})
        elif found := SKIPPED.search(line):
            close(now)
            skipped.append(found.group(1))
    code = proc.wait()
    total = time.perf_counter() - t0
    close(total)
    return stages, skipped, total, code


def table(record: dict) -> str:
    h = record["host"]
    readings = ", ".join(f"{r['fp32_peak_gflops']} at load {r['load_1min']}" for r in h.get("readings", []))
    lines = [f"`dvc repro` on {h['cores']} cores, fp32 peak {h['fp32_peak_gflops']} GFLOP/s ({record['label']}, "
             f"{record['date']}, exit {record['exit_code']})" + (f"; peak readings before/after: {readings}" if readings
                                                                  else ""), "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {s['stage']} | {s['seconds']:.0f} |" for s in record["stages"]]
    by_kind: dict[str, float] = {}
    for s in record["stages"]:
        by_kind[s["stage"].split("@")[0]] = by_kind.get(s["stage"].split("@")[0], 0.0) + s["seconds"]
    lines += ["", "| stage kind | seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in by_kind.items()]
    if record.get("skipped"):
        lines += ["", f"Skipped as up to date ({len(record['skipped'])}): {', '.join(record['skipped'])}. `-- --force` "
                      "runs every stage."]
    total = f"Total {record['total_s']:.0f} s = {record['minutes']:.1f} min = {record['minute_gflops']:.0f} min·GFLOP/s"
    profile, budget = record.get("profile", "cpu"), record.get("budget_minute_gflops")
    if budget is None:
        lines += ["", f"{total}; the {profile} profile has no time budget here."]
    else:
        lines += ["", f"{total}; the {profile} profile's budget {budget:.0f} min·GFLOP/s ({budget / REFERENCE_GFLOPS:.0f} "
                      f"min at the reference {REFERENCE_GFLOPS:.0f} GFLOP/s), i.e. {record['allowed_minutes']:.1f} min at "
                      f"this host's peak: {'within' if record['minute_gflops'] <= budget else 'OVER'} budget."]
    return "\n".join(lines) + "\n"


def budget_of(profile: str) -> float | None:
    """The profile's budget in min·GFLOP/s, None for a profile without one."""
    minutes = PROFILE_BUDGET_MINUTES.get(profile)
    return None if minutes is None else minutes * REFERENCE_GFLOPS


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="repro")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    before = [peak_reading() for _ in range(READINGS)]
    stages, skipped, total, code = timed_repro(extra, print)
    machine = host(before + [peak_reading() for _ in range(READINGS)])
    for s in stages:
        s.pop("start")
    minutes = total / 60
    profile = str(read_params(PARAMS).profile)
    budget = budget_of(profile)
    record = {"schema": 1, "label": args.label, "date": time.strftime("%Y-%m-%d %H:%M"), "args": extra,
              "exit_code": code, "host": machine, "stages": stages, "skipped": skipped, "total_s": round(total, 1),
              "minutes": round(minutes, 2), "minute_gflops": round(minutes * machine["fp32_peak_gflops"], 0),
              "profile": profile, "budget_minute_gflops": budget,
              "allowed_minutes": None if budget is None else round(budget / machine["fp32_peak_gflops"], 2)}
    OUT.mkdir(parents=True, exist_ok=True)
    # a failed repro keeps its own record: the re-run after the fix does not overwrite what the failure cost
    stem = f"repro_budget-{args.label}" + (f"-exit{code}" if code else "")
    (OUT / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (OUT / f"{stem}.md").write_text(table(record))
    print(table(record))
    return code


if __name__ == "__main__":
    sys.exit(main())
