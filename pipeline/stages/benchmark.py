"""benchmark stage: the length sweep of one model, independent of tasks (pipeline/measure/sweep.py).

Writes <paths.bench>/<model>.json (results/bench/ by default): one cell per length with train and
inference time and memory, FLOPs and MFU; decode latency per context; the fitted complexity
exponents beside the family's claimed ones. The report reads every model of params.yaml's `bench`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pipeline.config import ROOT, Config


def result_path(cfg: Config, model: str | None = None) -> Path:
    return ROOT / cfg.paths.bench / f"{model or cfg.model.name}.json"


def write_json(path: Path, data: dict) -> None:
    """Temp file + rename: a killed stage leaves the old file or none, never half a JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(cfg: Config) -> None:
    from pipeline.measure import sweep

    try:
        result = sweep.run(cfg)
    except RuntimeError as e:
        if "no cell could be measured" in str(e):
            print(f"benchmark: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        raise
    path = result_path(cfg)
    write_json(path, result)
    fits = result["fits"]

    def exp(key: str) -> str:
        fit = fits[key]["fit"]
        return "—" if fit is None else f"{fit['exponent']:.2f}"

    ok = sum(c["status"] == "ok" for c in result["cells"])
    print(f"[benchmark] {cfg.model.name}: {ok}/{len(result['cells'])} cells, exponents train time {exp('train_time')}, "
          f"memory {exp('infer_memory')}, decode {exp('decode_latency')} ({result['wall_s']} s) -> "
          f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
