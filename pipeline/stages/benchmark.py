"""benchmark stage: the length sweep of one model, independent of tasks (pipeline/measure/sweep.py).

Writes <paths.bench>/<model>.json (results/bench/ by default): one cell per length with train and
inference time and memory, FLOPs and MFU; decode latency per context; the fitted complexity
exponents beside the family's claimed ones. The report reads every model of params.yaml's `bench`.
"""
from __future__ import annotations

import sys

from pipeline import paths
from pipeline.schema import Config

TASK_BOUND = False  # the sweep is the model's own: no task, causal where the backbone can be


def main(cfg: Config) -> None:
    from pipeline.measure import sweep

    try:
        result = sweep.run(cfg)
    except RuntimeError as e:
        if "no cell could be measured" in str(e):
            print(f"benchmark: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        raise
    path = paths.bench_result(cfg)
    result.write(path)
    fits = result.fits

    def exp(key: str) -> str:
        fit = fits[key]["fit"]
        return "—" if fit is None else f"{fit['exponent']:.2f}"

    ok = sum(c["status"] == "ok" for c in result.cells)
    print(f"[benchmark] {cfg.model.name}: {ok}/{len(result.cells)} cells, exponents train time {exp('train_time')}, "
          f"memory {exp('infer_memory')}, decode {exp('decode_latency')} ({result.wall_s} s) -> {paths.relative(path)}")
