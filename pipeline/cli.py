"""`python -m pipeline <stage> key=value ...`: one subcommand per DVC stage."""
from __future__ import annotations

import importlib
import sys

STAGES = ("download", "tokenize", "train", "evaluate", "benchmark", "report")
USAGE = (f"usage: python -m pipeline {{{','.join(STAGES)}}} [group=choice] [dotted.key=value ...]\n"
         f"       python -m pipeline grid models=a,b|all tasks=x,y|all [--add] [--dry-run]")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("groups: profile, task, model, trainer, logger (see conf/); e.g.\n"
              "  python -m pipeline train model=lstm task=ptb trainer.max_epochs=1")
        return 0 if argv else 2
    stage, overrides = argv[0], argv[1:]
    if stage == "grid":  # writes params.yaml; not a stage
        from pipeline import grid
        from pipeline.schema import ConfigError

        try:
            return grid.main(overrides)
        except ConfigError as e:
            print(f"grid: {e}", file=sys.stderr)
            return 2
    if stage not in STAGES:
        print(f"unknown stage '{stage}'; choose one of: {', '.join(STAGES)} (or grid)", file=sys.stderr)
        return 2
    from pipeline.config import load
    from pipeline.schema import ConfigError  # also ArtifactError: a missing, corrupt or stale input

    try:
        module = importlib.import_module(f"pipeline.stages.{stage}")
        # download / tokenize / report read no model code: a model file that fails cannot stop them
        cfg = load(overrides, model=getattr(module, "NEEDS_MODEL", True), task_bound=getattr(module, "TASK_BOUND", True))
        module.main(cfg)
    except ConfigError as e:
        print(f"{stage}: {e}", file=sys.stderr)  # bad config or a missing / stale input: exit 2, nothing written
        return 2
    return 0
