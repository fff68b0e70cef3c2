"""What a stage process costs before it does any work: importing its module, and everything
`python -m pipeline <stage>` runs before the stage's main (CLI, stage module, config load with its
model check), per stage, plus `config` and `--help` as whole commands.

Each is a fresh `python -X importtime` process, timed for CPU (user + sys, from wait4), wall, and the
import time Python itself counts (its top-level imports' cumulative time); the median of --repeats
runs after one uncounted round, trees and commands interleaved so that load on the machine hits
them alike. Several trees (e.g. a checkout of the commit before a change, and this one) are
measured side by side in one run: `--tree before=/tmp/old --tree after=.`.

    python -m bench.startup [--tree NAME=PATH ...] [--repeats 3] [--label quiet-host]

Writes bench/results/startup.json and startup.md (not a DVC output: a measurement of this machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import write_results

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "startup.json"
RUN = ["model=lstm", "task=ptb"]
# stage -> its command line's overrides (dvc.yaml's cmd for one instance)
STAGES = {"train": RUN, "evaluate": RUN, "measure": RUN, "benchmark": ["model=lstm"], "report": [],
          "download": ["task=ptb"], "tokenize": ["task=ptb"]}
# What pipeline/cli.py main() runs before `module.main(cfg)`.
READY = ("import importlib; from pipeline.cli import quiet_libraries; from pipeline.config import load; "
         "module = importlib.import_module('pipeline.stages.{stage}'); quiet_libraries(); "
         "load({overrides!r}, model=getattr(module, 'NEEDS_MODEL', True), task_bound=getattr(module, 'TASK_BOUND', True))")
# evaluate and measure then load best.ckpt: the checkpoint code and the kind's model class (ptb: lm)
LOADS = {"evaluate": "pipeline.tasks.checkpoint, pipeline.tasks.lm", "measure": "pipeline.tasks.checkpoint, pipeline.tasks.lm"}
WHOLE = {"config": ["-m", "pipeline", "config", *RUN], "--help": ["-m", "pipeline", "--help"]}


def commands() -> dict[str, dict[str, list[str]]]:
    """{row: {measurement: python arguments}}."""
    rows = {"python (nothing)": {"import": ["-c", "pass"]}, "torch": {"import": ["-c", "import torch"]}}
    for stage, overrides in STAGES.items():
        ready = READY.format(stage=stage, overrides=overrides)
        rows[stage] = {"import": ["-c", f"import pipeline.stages.{stage}"], "ready": ["-c", ready]}
        if stage in LOADS:
            rows[stage]["ready to load"] = ["-c", f"{ready}; import {LOADS[stage]}"]
    rows.update({name: {"ready": args} for name, args in WHOLE.items()})
    return rows


def run(args: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """(CPU s, wall s, stderr) of one `python args` in `cwd` (whose pipeline/ is imported: cwd leads sys.path)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"`python {' '.join(args)[:200]}` failed in {cwd}: {stderr.strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall, stderr


def importtime_s(stderr: str) -> float:
    """Total of `-X importtime`: the cumulative microseconds of the top-level imports."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|", 2)
            if not name[1:].startswith(" "):  # nested imports are indented by two more spaces per level
                total += int(cumulative)
    return total / 1e6


def measure(trees: dict[str, Path], repeats: int) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    rows = commands()
    samples = {(t, r, m): [] for t in trees for r, ms in rows.items() for m in ms}
    for repeat in range(repeats + 1):  # round 0 warms the page cache and writes .pyc files: not counted
        for r, ms in rows.items():
            for m, args in ms.items():
                for t, cwd in trees.items():
                    cpu, wall, stderr = run(["-X", "importtime", *args], cwd, env)
                    if repeat:
                        samples[(t, r, m)].append((cpu, wall, importtime_s(stderr)))
    out = {}
    for (t, r, m), values in samples.items():
        out.setdefault(r, {}).setdefault(m, {})[t] = {
            key: round(statistics.median(v[i] for v in values), 2)
            for i, key in enumerate(("cpu_s", "wall_s", "importtime_s"))} | {"runs": len(values)}
    return out


def table(record: dict) -> str:
    trees = list(record["trees"])
    head = " | ".join(f"{t} CPU s | {t} wall s | {t} importtime s" for t in trees)
    lines = [f"Startup on {record['cores']} cores ({record['label']}, {record['date']}; median of {record['repeats']} "
             f"runs, load average {record['load_average']} at the start)", "",
             "`import`: `python -c 'import pipeline.stages.<stage>'`; `ready`: all that `python -m pipeline <stage> "
             f"{' '.join(RUN)}` runs before the stage's main (CLI, stage module, config load and model check); "
             "`ready to load`: that and the imports that loading best.ckpt adds (checkpoint code, the model class); "
             "`config` and `--help`: the whole command.", "",
             f"| command | measured | {head} |", "|---|---|" + "---:|" * (3 * len(trees))]
    for row, measured in record["rows"].items():
        for m, by_tree in measured.items():
            cells = " | ".join(f"{by_tree[t]['cpu_s']:.2f} | {by_tree[t]['wall_s']:.2f} | {by_tree[t]['importtime_s']:.2f}"
                               for t in trees)
            lines.append(f"| {row} | {m} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout to measure (default: this one, as 'here')")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    trees = {}
    for spec in args.tree or [f"here={ROOT}"]:
        name, _, path = spec.partition("=")
        if not path or not (Path(path) / "pipeline" / "cli.py").exists():
            parser.error(f"--tree {spec}: expected NAME=PATH to a seqarena checkout")
        trees[name] = Path(path).resolve()
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    rows = measure(trees, args.repeats)
    record = {"label": args.label, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "cores": os.cpu_count(), "load_average": round(load, 2), "repeats": args.repeats,
              "trees": {k: str(v) for k, v in trees.items()}, "rows": rows,
              "wall_s": round(time.perf_counter() - t0, 1)}
    write_results(record, args.out, table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
