"""What the Lightning Trainer adds per training step, per run of the grid.

The same task model (embedding + backbone + head, built as the train stage builds it), the same
batches (the first `--steps` of the task's real training loader) and the same optimiser and schedule
(TaskModule.optimizer_and_schedule, gradient clipping as configured) are stepped two ways in one
process, interleaved `--repeats` times:

- plain: a bare PyTorch loop (forward, loss, backward, clip, AdamW, LR step);
- trainer: `stages/train.py`'s Trainer with the train stage's callbacks (throughput, last.ckpt every
  trainer.last_ckpt_every_n_steps, learning curve, progress lines, LR monitor, graceful stop) and its
  CSV logger, without validation.

A step's time is the steady-state interval between the starts of consecutive steps, after `--warmup`
steps, so both ways include everything that happens between two steps. The overhead is
trainer / plain - 1 of the medians. Needs the tasks' tokenized data (`make stage S=tokenize@ptb`).

    python -m bench.trainer_overhead [--runs lstm-ptb mamba-selcopy] [--steps 30] [--repeats 3] [--allocator glibc-default]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench import write_results
from pipeline import kinds
from pipeline.config import check_runs, load, read_params
from pipeline.measure.env import fingerprint
from pipeline.schema import to_dict

OUT = Path(__file__).parent / "results" / "trainer_overhead.json"


def first_batches(cfg, n: int) -> tuple[list[dict], dict]:
    from pipeline.tasks.trainable import SequenceDataModule

    datamodule = SequenceDataModule(cfg, seed=0)
    datamodule.setup("fit")
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(batch)
        if len(batches) == n:
            break
    return batches, datamodule.meta


def new_module(cfg, meta):
    from pipeline.tasks.trainable import trainable

    torch.manual_seed(0)
    return trainable(kinds.get(cfg.task.kind).task_module())(to_dict(cfg), meta).train()


def plain_steps(cfg, meta, batches: list[dict]) -> list[float]:
    """Start time of every step of a bare loop."""
    module = new_module(cfg, meta)
    opt = module.optimizer_and_schedule(len(batches))
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    clip = cfg.trainer.gradient_clip_val
    starts = []
    for batch in batches:
        starts.append(time.perf_counter())
        loss_terms, weights, _, _ = module.per_example(batch)
        loss = (loss_terms * weights).sum() / weights.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        schedule.step()
    starts.append(time.perf_counter())
    return starts


def trainer_steps(cfg, meta, batches: list[dict]) -> list[float]:
    """Start time of every step through the train stage's Trainer and callbacks."""
    from lightning.pytorch.callbacks import Callback, LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    from pipeline.stages.train import build_trainer, training_fingerprint
    from pipeline.tasks.callbacks import GracefulStop, LastCheckpoint, ProgressLines, TokenThroughput
    from pipeline.tasks.curves import LearningCurve

    starts: list[float] = []

    class StepClock(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            starts.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            starts.append(time.perf_counter())

    module = new_module(cfg, meta)
    with tempfile.TemporaryDirectory() as tmp:
        throughput = TokenThroughput()
        callbacks = [StepClock(), throughput,
                     LastCheckpoint(Path(tmp) / "last.ckpt", cfg.trainer.last_ckpt_every_n_steps,
                                    training_fingerprint(cfg, 0)),
                     LearningCurve(0, module.metric_name), GracefulStop(),
                     ProgressLines("bench", throughput), LearningRateMonitor(logging_interval="step")]
        trainer = build_trainer(cfg, callbacks, [CSVLogger(tmp, name="csv", version="")], max_steps=len(batches),
                                max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0,
                                val_check_interval=None, enable_checkpointing=False, default_root_dir=tmp)
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
        callbacks[4].restore()
    return starts


def step_seconds(starts: list[float], warmup: int) -> float:
    intervals = [b - a for a, b in zip(starts[warmup:], starts[warmup + 1:])]
    return statistics.median(intervals)


def measure_run(name: str, model: str, task: str, profile: str, steps: int, warmup: int, repeats: int) -> dict:
    cfg = load([f"model={model}", f"task={task}", f"profile={profile}", "logger=none",
                "trainer.enable_progress_bar=false"])
    batches, meta = first_batches(cfg, steps)
    plain, lightning = [], []
    for _ in range(repeats):  # interleaved: drift on the host affects both ways alike
        plain.append(step_seconds(plain_steps(cfg, meta, batches), warmup))
        lightning.append(step_seconds(trainer_steps(cfg, meta, batches), warmup))
    p, t = statistics.median(plain), statistics.median(lightning)
    return {"run": name, "model": model, "task": task, "batch": int(batches[0]["ids"].shape[0]),
            "length": int(batches[0]["ids"].shape[1]), "plain_step_ms": round(1e3 * p, 2),
            "trainer_step_ms": round(1e3 * t, 2), "overhead": round(t / p - 1, 4),
            "plain_all_ms": [round(1e3 * x, 2) for x in plain], "trainer_all_ms": [round(1e3 * x, 2) for x in lightning]}


def table(report: dict) -> str:
    lines = [f"Trainer vs plain PyTorch loop, per step (median of {report['repeats']} interleaved repeats of "
             f"{report['steps']} steps after {report['warmup']} warm-up; {report['profile']} profile; allocator "
             f"{report.get('allocator', 'glibc-default')}); "
             f"{report['host']['cpu']}, {report['threads']} threads, torch {report['host']['torch']}", "",
             "| run | batch × length | plain ms/step | Trainer ms/step | overhead |", "|---|---|---:|---:|---:|"]
    for r in report["runs"]:
        lines.append(f"| {r['run']} | {r['batch']} × {r['length']} | {r['plain_step_ms']:.1f} | "
                     f"{r['trainer_step_ms']:.1f} | {100 * r['overhead']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="*", help="runs of params.yaml's grid (default: all)")
    parser.add_argument("--profile", default=None, help="default: params.yaml's")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/trainer_overhead[-<allocator>].json")
    parser.add_argument("--allocator", choices=("pipeline", "glibc-default"), default="pipeline",
                        help="pipeline: glibc keeps freed memory, as every `python -m pipeline` stage sets it "
                             "(pipeline/allocator.py); glibc-default: malloc's own trim and mmap thresholds")
    args = parser.parse_args()
    if args.allocator == "pipeline":
        from pipeline.allocator import keep_freed_memory

        keep_freed_memory()
    out = args.out or (OUT if args.allocator == "pipeline" else OUT.with_name(f"{OUT.stem}-{args.allocator}.json"))
    params = read_params()
    grid = check_runs(params)
    names = args.runs or list(grid)
    unknown = [n for n in names if n not in grid]
    if unknown:
        raise SystemExit(f"--runs {unknown}: not in params.yaml's runs ({', '.join(grid)})")
    profile = args.profile or params.profile
    t0 = time.perf_counter()
    runs = []
    for name in names:
        model, task = grid[name]
        runs.append(measure_run(name, model, task, profile, args.steps, args.warmup, args.repeats))
        print(f"{name}: plain {runs[-1]['plain_step_ms']} ms, Trainer {runs[-1]['trainer_step_ms']} ms, "
              f"overhead {100 * runs[-1]['overhead']:+.1f}%", flush=True)
    report = {"profile": profile, "allocator": args.allocator, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
              "threads": torch.get_num_threads(), "host": fingerprint(), "runs": runs,
              "wall_s": round(time.perf_counter() - t0, 1)}
    write_results(report, out, table(report))


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
