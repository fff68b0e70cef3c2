"""The evaluate stage's W&B logging: each training run (found by the id its train stage saved in
logs/<task>/<model>/seed<k>/wandb.json) is resumed once and receives its test results and the measure
stage's speed and memory (speed.json, which evaluate depends on), so runs can be sorted and charted
by test metric, per length bucket, speed and memory in the W&B UI. One resume per run: each costs
about 2.4 s of offline W&B start-up.

Per seed: summary `test/<metric>` with its 95% interval `test/<metric>_lo` / `_hi` (+
`test/<metric>/<bucket>` and `test/count/<bucket>`),
`params/backbone`, `flops_per_token`, `receptive_field/tokens`; table `test/by_bucket` with a line
chart; and from speed.json summary `speed/infer_tokens_per_s`, `speed/train_tokens_per_s`,
`speed/peak_mem_mb` with table `speed/by_length` (inference tokens/s, latency, peak memory).
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from pipeline import paths
from pipeline.artifacts import read_json
from pipeline.wandb_mode import resolve_mode


def resumed_runs(cfg: Any, seeds: list[int]) -> Iterator[tuple[int, Any]]:
    """(seed, W&B run) for every seed whose training run has an id on disk, each resumed in turn and
    finished after use; nothing when W&B is disabled or the runs were trained without it."""
    if resolve_mode(cfg.logger.mode) == "disabled":
        return
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    for seed in seeds:
        saved = paths.wandb_ref(cfg, seed)
        if not saved.exists():
            continue  # trained with W&B disabled: nothing to attach the results to
        ref = read_json(saved, f"`dvc repro train@{cfg.model.name}-{cfg.task.name}`")
        run = wandb.init(id=ref["run_id"], resume="allow", project=ref.get("project", cfg.logger.project),
                         entity=cfg.logger.entity, mode=resolve_mode(cfg.logger.mode), dir=str(paths.wandb_dir(cfg)))
        try:
            yield seed, run
        finally:
            run.finish()


def log_eval(cfg: Any, result: Any, measured: Any = None) -> list[str]:
    """Resume every seed's training run and log `result` (an EvalResult) and `measured` (a SpeedResult,
    or None when the run has not been measured); returns the run ids."""
    by_seed = {s["seed"]: s for s in result.seeds}
    ids = []
    for seed, run in resumed_runs(cfg, list(by_seed)):
        import wandb  # resumed_runs imported it

        seed_result = by_seed[seed]
        run.summary.update(summary(result, seed_result))
        table = wandb.Table(columns=["bucket", "bucket_hi", "count", result.metric],
                            data=[[label, hi, count, value] for label, hi, count, value in
                                  zip(result.buckets["labels"], result.buckets["edges"], seed_result["count"],
                                      seed_result["per_bucket"])])
        payload = {"test/by_bucket": table,
                   "test/by_bucket_chart": wandb.plot.line(table, "bucket_hi", result.metric,
                                                           title=f"test {result.metric} by {result.buckets['unit']}")}
        if measured is not None:
            infer, train = measured.infer, measured.train
            payload["speed/by_length"] = wandb.Table(
                columns=["length", "infer_tokens_per_s", "latency_ms", "peak_mem_mb"],
                data=[list(row) for row in zip(infer["lengths"], infer["infer_tokens_per_s"], infer["latency_ms"],
                                               infer["peak_mem_mb"])])
            run.summary.update({"speed/infer_tokens_per_s": infer["infer_tokens_per_s"][-1],
                                "speed/train_tokens_per_s": train["tokens_per_s"],
                                "speed/peak_mem_mb": infer["peak_mem_mb"][-1], "speed/device": infer["device"]})
        run.log(payload)
        ids.append(run.id)
    return ids


def summary(result: Any, seed_result: dict) -> dict[str, Any]:
    metric = result.metric
    out: dict[str, Any] = {f"test/{metric}": seed_result["overall"], "params/backbone": result.params["backbone"],
                           "params/total": result.params["total"], "flops_per_token": result.flops_per_token}
    interval = seed_result.get("interval") or {}
    if interval.get("lo") is not None:  # the 95% interval (pipeline/outcomes.py; sacreBLEU's for BLEU)
        out[f"test/{metric}_lo"], out[f"test/{metric}_hi"] = interval["lo"], interval["hi"]
    for label, value, count in zip(result.buckets["labels"], seed_result["per_bucket"], seed_result["count"]):
        out[f"test/count/{label}"] = count
        if value is not None:
            out[f"test/{metric}/{label}"] = value
    if result.receptive_field:
        out["receptive_field/tokens"] = result.receptive_field.get("tokens")
    for key in ("chrf", "target_ppl"):
        if seed_result.get(key) is not None:
            out[f"test/{key}"] = seed_result[key]
    return out
