"""The evaluate stage's W&B logging: each training run (found by the id its train stage saved in
ckpt/seed<k>/wandb.json) is resumed and receives its test results, so runs can be sorted and
charted by test metric, per length bucket, speed and memory in the W&B UI.

Logged per seed: summary `test/<metric>` (+ `test/<metric>/<bucket>` and `test/count/<bucket>`),
`params/backbone`, `flops_per_token`, `receptive_field/tokens`; tables `test/by_bucket` (with a
line chart) and `eval/by_length` (inference tokens/s, latency, peak memory).
"""
from __future__ import annotations

import os
from typing import Any

from pipeline import paths
from pipeline.artifacts import read_json
from pipeline.wandb_mode import resolve_mode


def log_eval(cfg: Any, result: Any) -> list[str]:
    """Resume every seed's training run and log `result` (an EvalResult); returns the run ids."""
    if resolve_mode(cfg.logger.mode) == "disabled":
        return []
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    ids = []
    for seed_result in result.seeds:
        saved = paths.ckpt_dir(cfg, seed_result["seed"]) / paths.WANDB_RUN
        if not saved.exists():
            continue  # trained with W&B disabled: nothing to attach the results to
        ref = read_json(saved, f"`dvc repro train@{cfg.model.name}-{cfg.task.name}`")
        run = wandb.init(id=ref["run_id"], resume="allow", project=ref.get("project", cfg.logger.project),
                         entity=cfg.logger.entity, mode=resolve_mode(cfg.logger.mode), dir=str(paths.wandb_dir(cfg)))
        try:
            run.summary.update(summary(result, seed_result))
            labels = result.buckets["labels"]
            table = wandb.Table(columns=["bucket", "bucket_hi", "count", result.metric],
                                data=[[label, hi, count, value] for label, hi, count, value in
                                      zip(labels, result.buckets["edges"], seed_result["count"], seed_result["per_bucket"])])
            speed = result.speed
            by_length = wandb.Table(columns=["length", "infer_tokens_per_s", "latency_ms", "peak_mem_mb"],
                                    data=[list(row) for row in zip(speed["lengths"], speed["infer_tokens_per_s"],
                                                                  speed["latency_ms"], speed["peak_mem_mb"])])
            run.log({"test/by_bucket": table, "eval/by_length": by_length,
                     "test/by_bucket_chart": wandb.plot.line(table, "bucket_hi", result.metric,
                                                             title=f"test {result.metric} by {result.buckets['unit']}")})
            ids.append(run.id)
        finally:
            run.finish()
    return ids


def summary(result: Any, seed_result: dict) -> dict[str, Any]:
    metric = result.metric
    out: dict[str, Any] = {f"test/{metric}": seed_result["overall"], "params/backbone": result.params["backbone"],
                           "params/total": result.params["total"], "flops_per_token": result.flops_per_token}
    for label, value, count in zip(result.buckets["labels"], seed_result["per_bucket"], seed_result["count"]):
        out[f"test/count/{label}"] = count
        if value is not None:
            out[f"test/{metric}/{label}"] = value
    if result.receptive_field:
        out["receptive_field/tokens"] = result.receptive_field.get("tokens")
    for key in ("chrf", "target_ppl"):
        if seed_result.get(key) is not None:
            out[f"test/{key}"] = seed_result[key]
    if result.speed.get("infer_tokens_per_s"):
        out["eval/infer_tokens_per_s"] = result.speed["infer_tokens_per_s"][-1]
    return out
