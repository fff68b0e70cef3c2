"""evaluate stage: test-split metric per length bucket, with intervals, FLOPs and receptive field.

Reads each seed's best checkpoint and scores the test split in one pass (the same bucketed metric
as validation), keeping every scored unit. Writes runs/<task>/<model>/eval.json (full result),
metrics.json (headline numbers for `dvc metrics show`) and examples/seed<k>.npz (per-example
outcomes). All deterministic: the same checkpoint gives the same bytes. Speed and memory depend on
the machine: the measure stage (pipeline/stages/measure.py).

`receptive_field` is measured on the trained backbone (pipeline/measure/receptive_field.py) at
min(task.max_len, RF_MAX_LEN): which input positions move output t (the last position when causal,
the middle when bidirectional). A dict, or null for encoder-decoder models:
    {"tokens": influencing positions, "span": first..last influencing extent, "left": .., "right": ..,
     "position": t, "measured_at": L, "full": tokens == L, "weakest": log10 relative influence}
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pipeline import buckets, kinds, outcomes, paths
from pipeline.artifacts import EvalResult, SpeedResult, run_folder_lock, write_json
from pipeline.data.datamodule import SequenceData, read_meta
from pipeline.eval_tracking import log_eval
from pipeline.measure import context_probe, flops, receptive_field
from pipeline.measure.task_batch import task_batch, test_stream
from pipeline.models.base import Backbone
from pipeline.schema import Config, to_dict
from pipeline.tasks.base import TaskModule
from pipeline.tasks.checkpoint import load_best, require_finished_training
from pipeline.tasks.metrics import BucketSums

RF_MAX_LEN = 1024  # one float64 forward + backward at batch 1: cheap up to here


def score(module: TaskModule, cfg: Config, seed: int, split: str = "test") -> tuple[dict, dict]:
    """One pass over a split: the bucketed metric, summed exactly as validation's BucketedMean sums
    it (pipeline/tasks/metrics.py), and every scored unit behind it (pipeline/outcomes.py)."""
    datamodule = SequenceData(cfg, seed=seed)
    datamodule.test_split = split
    metric = BucketSums(len(module.bucket_edges), next(module.parameters()).device)
    scored = outcomes.collect(module, datamodule, metric)
    result = metric.compute()
    count = result["count"].tolist()
    per_bucket = [float(module.finalize(v)) if c > 0 else None for v, c in zip(result["per_bucket"], count)]
    return {"seed": seed, "overall": float(module.finalize(result["overall"])), "per_bucket": per_bucket,
            "count": [int(c) for c in count]}, scored


def test_metric(module: TaskModule, cfg: Config, seed: int, split: str = "test") -> dict:
    return score(module, cfg, seed, split)[0]


def scored_once(tested: dict):
    """A test_metric for the kind's evaluate that hands back the test split's result already computed
    (translation reads it as the target-side perplexity) instead of a second pass."""
    def test_metric_of_kind(module: TaskModule, cfg: Config, seed: int, split: str = "test") -> dict:
        return tested if split == "test" else test_metric(module, cfg, seed, split)

    return test_metric_of_kind


def flops_per_token(module: TaskModule, cfg: Config) -> float:
    batch = task_batch(cfg, test_stream(cfg), cfg.task.max_len, 1, next(module.parameters()).device)
    return flops.forward_flops_per_token(lambda: module.per_example(batch), module, cfg.task.max_len)


def measured_receptive_field(module: TaskModule, cfg: Config) -> dict | None:
    """On a float64 copy, so the trained module is untouched; None for encoder-decoder models."""
    if not isinstance(module.backbone, Backbone):
        return None
    return receptive_field.measure(module.backbone, min(cfg.task.max_len, RF_MAX_LEN))


def extrapolation(module: TaskModule, cfg: Config, seed: int, splits: list[str], meta: dict) -> dict:
    """Overall metric on each extra test split of a synthetic task: trained at L, tested at 2L, 4L
    (test_{k}x), or at another number of MQAR pairs (test_{k}pairs). Each split's scored units go to
    examples/seed<k>.<split>.npz beside the test split's, and under "scored" (summarize_extrapolation's
    interval)."""
    out = {}
    limit = cfg.data.max_eval_examples  # the data module evaluates at most this many per split
    for split in splits:
        r, scored = score(module, cfg, seed, split)
        outcomes.save(paths.run_dir(cfg) / "examples" / f"seed{seed}.{split}.npz", scored)
        examples = meta["splits"][split]["examples"]
        out[split] = {"length": meta.get("split_lengths", {}).get(split, meta["splits"][split]["max_len"]),
                      "overall": r["overall"], "examples": examples if limit is None else min(examples, limit),
                      "scored": scored}
        if split.endswith("pairs"):
            pairs = int(split[len("test_"):-len("pairs")])
            out[split].update(num_pairs=pairs, chance=meta["splits"][split]["no_recall"])  # measured floor
    return out


def summarize_extrapolation(extra: dict[int, dict], metric: str) -> dict:
    """Per extra split: the mean over seeds, with the estimand's interval (pipeline/outcomes.py: test
    examples, then seeds) from every seed's scored units."""
    seeds = sorted(extra)
    out = {}
    for split, first in extra[seeds[0]].items():
        values = [extra[s][split]["overall"] for s in seeds]
        found = outcomes.stacked([extra[s][split]["scored"] for s in seeds])
        out[split] = {**{k: v for k, v in first.items() if k not in ("overall", "scored")},
                      "overall": float(np.mean(values)),
                      "interval": None if found is None else outcomes.estimand_interval(found, metric)}
    return out


def summarize(cfg: Config, seeds: list[dict], scored: list[dict], train: dict, module: TaskModule,
              meta: dict) -> EvalResult:
    kind = kinds.get(cfg.task.kind)
    overall = [s["overall"] for s in seeds]
    n_buckets = len(seeds[0]["per_bucket"])
    per_bucket = []
    for i in range(n_buckets):
        vals = [s["per_bucket"][i] for s in seeds if s["per_bucket"][i] is not None]
        per_bucket.append(float(np.mean(vals)) if vals else None)
    train_by_seed = {r["seed"]: r for r in train.get("seeds", [])}
    for s in seeds:
        s["train"] = train_by_seed.get(s["seed"], {})
    edges = module.bucket_edges
    fields = dict(
        task=cfg.task.name, task_kind=cfg.task.kind, model=cfg.model.name, backbone=cfg.model.backbone,
        metric=module.metric_name, higher_is_better=module.higher_is_better,
        config=to_dict(module.cfg), params=module.param_counts(), sizing=module.sizing,
        flops_per_token=flops_per_token(module, cfg),
        receptive_field=measured_receptive_field(module, cfg),
        baseline=meta.get("baseline"), reference=cfg.task.reference,
        buckets={"edges": edges, "labels": buckets.labels(edges), "unit": kind.bucket_label(cfg.task, meta)},
        data=data_hygiene(meta), claim=claimed_costs(module),
        seeds=seeds,
        overall=float(np.mean(overall)), overall_std=float(np.std(overall, ddof=1)) if len(overall) > 1 else None,
        per_bucket=per_bucket, count=seeds[0]["count"])
    extra = kind.summarize(seeds)
    fields.update(interval_fields(seeds, scored, extra.get("metric", module.metric_name), n_buckets))
    return EvalResult(**{**fields, **extra})


def claimed_costs(module: TaskModule) -> dict | None:
    claim = getattr(module.backbone, "complexity", None)
    return None if claim is None else dataclasses.asdict(claim)


def data_hygiene(meta: dict) -> dict:
    """What the tokenize stage did about duplicates (kinds' readers), and the test split's size."""
    test = (meta.get("splits") or {}).get("test") or {}
    return {**(meta.get("hygiene") or {}), "test_examples": test.get("examples")}


def interval_fields(seeds: list[dict], scored: list[dict], metric: str, n_buckets: int) -> dict:
    """95% intervals of the overall and per-bucket metric, of the report's one estimand (pipeline/outcomes.py):
    from every seed's scored units (a two-stage bootstrap: test examples, then seeds), which also gives each
    seed its own `interval` and `per_bucket_interval` over the test examples; for BLEU (a corpus statistic,
    no per-unit outcomes) each seed's sacreBLEU interval combined with the seeds' spread."""
    if metric == "bleu":
        return outcomes.intervals_over_seeds(seeds, metric, n_buckets)
    found = outcomes.stacked(scored)
    if found is None:  # seeds scored on different units: cannot happen for one test split, but say so if it does
        raise ValueError("the seeds' test outcomes differ in units; the two-stage bootstrap needs the same test set")
    both = outcomes.estimand_intervals(found, metric, n_buckets)
    for seed, own in zip(seeds, both["seeds"]):
        seed.update(own)
    return both["run"]


def main(cfg: Config) -> None:
    with run_folder_lock(paths.run_dir(cfg)):  # not while a train of the same run rewrites its checkpoints
        evaluate_run(cfg)


def evaluate_run(cfg: Config) -> None:
    torch.set_float32_matmul_precision("high")
    train = require_finished_training(cfg)  # a killed training's best.ckpt is no result
    meta = read_meta(cfg)
    kind = kinds.get(cfg.task.kind)
    seeds, scored_by_seed, module, extra = [], [], None, {}
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
                          else "cpu")  # the profile's accelerator: beam search on a GPU machine's GPU
    # LM: the same test tokens at every context length, for the report's context use (read once)
    context_stream = test_stream(cfg) if cfg.task.kind == "lm" else None
    for seed in cfg.seeds:
        module = load_best(cfg, seed).to(device)
        tested, scored = score(module, cfg, seed)  # the metric and every scored unit, in one pass
        seed_result = kind.evaluate(module, cfg, seed, scored_once(tested))
        outcomes.save(paths.run_dir(cfg) / "examples" / f"seed{seed}.npz", scored)
        scored_by_seed.append(scored)
        if context_stream is not None:
            probed = context_probe.probe(module, context_stream, module.bucket_edges, cfg.task.max_len,
                                          cfg.data.eval_batch_size * cfg.task.max_len)
            if probed is not None:
                outcomes.save(paths.run_dir(cfg) / "examples" / f"seed{seed}.context.npz", probed)
        seeds.append(seed_result)
        if meta.get("extra_test_splits"):
            extra[seed] = extrapolation(module, cfg, seed, meta["extra_test_splits"], meta)
    assert module is not None
    result = summarize(cfg, seeds, scored_by_seed, train, module, meta)  # intervals over seeds: after the last
    if extra:
        result.extrapolation = summarize_extrapolation(extra, result.metric)
    out = paths.run_dir(cfg)
    # metrics.json first: eval.json is what marks the stage done, so the pair never disagrees
    write_json(out / paths.HEADLINE_METRICS, result.headline())
    result.write(out / paths.EVAL_RESULT)
    speed_path = out / paths.SPEED_RESULT
    log_eval(cfg, result, SpeedResult.read(speed_path, f"`dvc repro measure@{cfg.model.name}-{cfg.task.name}`")
             if speed_path.exists() else None)
    baseline = f"; {result.baseline['name']} baseline {result.baseline['value']:.4g}" if result.baseline else ""
    print(f"[evaluate] {cfg.task.name}/{cfg.model.name}: test {result.metric} {result.overall:.4g} "
          f"(n={sum(result.count)}{baseline})")
