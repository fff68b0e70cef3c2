"""Finding, loading and validating the results of evaluate (runs/<task>/<model>/eval.json) and of
measure (speed.json beside it: speed, memory and the machine, merged in as `speed`, `train_speed`
and `env`; a run not measured yet has them empty and the report shows `—`).

Both are read through their typed schemas (pipeline/artifacts.py `EvalResult`, `SpeedResult`);
this module adds the checks a schema cannot express (nested keys, per-bucket/per-length list
lengths) and the cross-run check that all models of a task share the metric and its direction.
Every problem is a ReportError naming the file, the key and what to run.

No torch here: the report runs (and is tested) where only the results exist.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pipeline.artifacts import ArtifactError, EvalResult, SpeedResult, read_json

# Dotted keys every eval.json must have; everything else is optional/nullable.
REQUIRED_KEYS = (
    "task", "task_kind", "model", "metric", "higher_is_better",
    "params.total", "params.backbone", "buckets.edges", "buckets.labels", "seeds", "count",
)
REQUIRED_SEED_KEYS = ("seed", "overall", "per_bucket")


class ReportError(ArtifactError):
    """Missing or malformed results, worded for the user: which file, which key, what to run."""


def collect(runs_dir: Path, wanted: set[tuple[str, str]] | None = None) -> list[dict]:
    """Read and validate every runs_dir/<task>/<model>/eval.json, sorted by (task, model); with `wanted`
    ({(task, model)}: the grid) only those: results of runs outside the grid are neither read nor checked."""
    runs_dir = Path(runs_dir)
    paths = sorted(runs_dir.glob("*/*/eval.json"))
    if wanted is not None:
        ignored = [f"{p.parent.parent.name}/{p.parent.name}" for p in paths if (p.parent.parent.name, p.parent.name) not in wanted]
        paths = [p for p in paths if (p.parent.parent.name, p.parent.name) in wanted]
        if ignored:
            print(f"[report] ignoring runs outside params.yaml's grid: {', '.join(ignored)}")
    if not paths:
        where = "does not exist" if not runs_dir.exists() else "holds no <task>/<model>/eval.json"
        raise ReportError(
            f"{runs_dir} {where}: nothing to report. Train and evaluate first, e.g. `dvc repro` for the "
            f"whole grid, or `python -m pipeline train task=ptb model=lstm` then "
            f"`python -m pipeline evaluate task=ptb model=lstm`."
        )
    results = [load_result(p) for p in paths]
    _check_tasks_consistent(results)
    _check_comparable(results)
    return results


def _setting(r: dict) -> tuple:
    """What must be equal for two runs to share a table: the profile and the parameter budget."""
    config = r.get("config") or {}
    return config.get("profile"), (config.get("model") or {}).get("budget_params")


def _check_comparable(results: list[dict]) -> None:
    """A run made by hand with another profile or budget (a smoke run beside cpu-profile runs) must
    not be ranked beside the others: refuse, naming the runs that differ."""
    groups: dict[tuple, list[str]] = {}
    for r in results:
        groups.setdefault(_setting(r), []).append(r["_path"])
    if len(groups) > 1:
        (usual, _), *others = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        lines = [f"{', '.join(runs)}: profile {s[0]!r}, budget_params {s[1]}" for s, runs in others]
        raise ReportError(f"runs made with different settings cannot share the report's tables; most runs have "
                          f"profile {usual[0]!r}, budget_params {usual[1]}, but " + "; ".join(lines)
                          + ". Re-run those with the grid's profile (`dvc repro`) or remove them")


def load_result(path: Path) -> dict:
    rerun = "the evaluate stage for this run"
    speed_path = Path(path).with_name("speed.json")
    try:
        result = EvalResult.from_dict(read_json(Path(path), rerun), path, rerun).to_dict()
        measured = SpeedResult.read(speed_path, "the measure stage for this run").to_dict() \
            if speed_path.exists() else {"infer": {}, "train": {}, "env": {}}
    except ArtifactError as e:
        raise ReportError(str(e)) from None
    result.update(speed=measured["infer"], train_speed=measured["train"], env=measured["env"],
                  curve=read_curve(Path(path).with_name("curve.csv")))
    validate(result, path)
    result["_path"] = str(path)
    return result


def read_curve(path: Path) -> list[dict]:
    """The train stage's learning curve (pipeline/tasks/curves.py); [] for a run trained before it existed."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        return [{"seed": int(r["seed"]), "step": int(r["step"]), "split": r["split"], "metric": r["metric"],
                 "value": float(r["value"])} for r in rows]
    except (KeyError, ValueError, TypeError) as e:
        raise ReportError(f"{path} is malformed ({e}): re-run the train stage for this run") from None


def validate(result: Any, path: Path | str) -> None:
    """Raise ReportError naming the file and the offending key."""
    if not isinstance(result, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level")
    for key in REQUIRED_KEYS:
        if _get(result, key) is None:
            raise ReportError(f"{path}: missing key '{key}' (eval.json schema {EvalResult.SCHEMA})")
    n = len(result["buckets"]["edges"])
    _check_len(path, "buckets.labels", result["buckets"]["labels"], n)
    _check_len(path, "count", result["count"], n)
    if not result["seeds"]:
        raise ReportError(f"{path}: key 'seeds' is empty; evaluate wrote no per-seed results")
    for i, seed in enumerate(result["seeds"]):
        for key in REQUIRED_SEED_KEYS:
            if not isinstance(seed, dict) or seed.get(key) is None:
                raise ReportError(f"{path}: missing key 'seeds[{i}].{key}'")
        _check_len(path, f"seeds[{i}].per_bucket", seed["per_bucket"], n)
    speed = result.get("speed")
    if speed:
        for key in ("lengths", "infer_tokens_per_s"):
            if speed.get(key) is None:
                raise ReportError(f"{Path(path).with_name('speed.json')}: missing key 'infer.{key}'")
        for key in ("infer_tokens_per_s", "latency_ms", "peak_mem_mb"):
            if speed.get(key) is not None:
                _check_len(Path(path).with_name("speed.json"), f"infer.{key}", speed[key], len(speed["lengths"]))


def _check_len(path: Path | str, key: str, value: Any, n: int) -> None:
    if not isinstance(value, list) or len(value) != n:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise ReportError(f"{path}: key '{key}' should be a list of {n} (one per bucket/length), got {got}")


def _check_tasks_consistent(results: list[dict]) -> None:
    """All models of a task must share the metric and its direction, or the tables are meaningless."""
    first: dict[str, dict] = {}
    for r in results:
        ref = first.setdefault(r["task"], r)
        for key in ("metric", "higher_is_better"):
            if r[key] != ref[key]:
                raise ReportError(f"task '{r['task']}': {r['_path']} has {key}={r[key]!r} but "
                                  f"{ref['_path']} has {key}={ref[key]!r}; re-evaluate both with the same code")


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d
