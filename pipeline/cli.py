"""`python -m pipeline <stage> key=value ...`: one subcommand per DVC stage, plus `grid` (writes
params.yaml) and `config` (prints the resolved config of a stage's command line)."""
from __future__ import annotations

import importlib
import os
import sys

STAGES = {
    "download": "fetch the task's corpus (sha256-checked) into data/raw/<task>",
    "tokenize": "raw corpus -> splits, tokenizer and token-id arrays in data/tokenized/<task>",
    "train": "fit model on task for every seed (Lightning) -> runs/<task>/<model>",
    "evaluate": "test metric per length bucket, intervals, FLOPs -> runs/<task>/<model>/eval.json",
    "measure": "speed and memory per length on this machine -> runs/<task>/<model>/speed.json",
    "benchmark": "length sweep of one model (time, memory, decoding, MFU) -> results/bench/<model>.json",
    "report": "every run and benchmark of params.yaml -> reports/report.md, CSVs, plots",
}
TOOLS = {
    "grid": "models=a,b|all tasks=x,y|all [bench=c,d] [profile=p] [seeds=0,1] [--add] [--dry-run]: rewrite params.yaml's grid",
    "config": "[group=choice ...] [key=value ...] [--check]: print the resolved config, as `train` would load it, "
              "each value with the file that set it (--check: also build the model, as every model stage does)",
    "sync": "[--dry-run] [--exp NAME ...]: upload the current experiment's offline W&B runs (params.yaml's runs + "
            "report), or those of queued DVC experiments",
    "publish": "DEST [runs=DIR] [reports=DIR]: the report's quality tables and every run's per-example outcomes "
               "(and translations) into DEST, for `rescore`",
    "rescore": "DEST: recompute a published report's metrics, intervals and verdicts from its outcomes alone; "
               "exit 1 naming any that differ",
    "exps": "[--run REGEX] [--all]: DVC experiments side by side in 120 columns: a row per run (<task>/<model>, its "
            "test metric) under the params that differ, a column per experiment (workspace, baseline, each exp run)",
    "stability": "BENCH_DIR OTHER_BENCH_DIR: the report's benchmark verdicts from two runs side by side; exit 1 "
                 "when one is firm in both and differs (docs/verdict-stability.md)",
}
# Tools imported by name, so that no stage's import closure (its DVC code deps) holds them
TOOL_MODULES = {"grid": "pipeline.grid", "sync": "pipeline.sync", "publish": "pipeline.publish",
                "rescore": "pipeline.rescore", "stability": "pipeline.report.stability", "exps": "pipeline.exps"}


def usage() -> str:
    from pipeline.config import GROUPS, all_choices

    lines = ["usage: python -m pipeline <command> [group=choice ...] [dotted.key=value ...]", "", "stages (dvc.yaml):"]
    lines += [f"  {name:<10} {text}" for name, text in STAGES.items()]
    lines += ["", "tools:"] + [f"  {name:<10} {text}" for name, text in TOOLS.items()]
    lines += ["", "groups (conf/<group>/<choice>.yaml):"]
    lines += [f"  {g}={'|'.join(all_choices(g))}" for g in GROUPS]
    lines += ["", "e.g.  python -m pipeline train model=lstm task=ptb trainer.max_epochs=1",
              "      python -m pipeline config model=mamba task=mqar profile=smoke"]
    return "\n".join(lines)


def command_help(command: str) -> str:
    """One command's usage: what it does and its module's own description (read, not imported: no torch)."""
    import ast
    from pathlib import Path

    module = Path(__file__).parent / ("stages" if command in STAGES else "") / f"{command}.py"
    doc = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8"))) or "" if module.exists() else ""
    args = "[group=choice ...] [dotted.key=value ...]" if command in STAGES else ""
    return "\n".join([f"usage: python -m pipeline {command} {args}".rstrip(), "",
                      STAGES.get(command) or TOOLS[command], "", doc,
                      "", "Run `python -m pipeline config <same arguments>` to see the resolved config."]).rstrip()


def quiet_libraries() -> None:
    """Each stage prints one line of what it did; Lightning's tips, accelerator notices and known
    deprecation chatter from the stack go (warnings about our own code stay)."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (r".*LeafSpec.*", r"Checkpoint directory .* exists and is not empty",
                    r"Experiment logs directory .* exists and is not empty", r".*litlogger.*",
                    r"The '(train|val|test)_dataloader' does not have many workers", r".*anonymous setting.*",
                    r"`isinstance\(treespec, LeafSpec\)`"):
        warnings.filterwarnings("ignore", message=message)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, overrides = argv[0], argv[1:]
    if command not in STAGES and command not in TOOLS:
        print(f"unknown command '{command}'; choose one of: {', '.join([*STAGES, *TOOLS])}", file=sys.stderr)
        return 2
    if {"-h", "--help"} & set(overrides):
        print(command_help(command))
        return 0
    from pipeline.schema import ConfigError  # also ArtifactError: a missing, corrupt or stale input

    try:
        if command in TOOL_MODULES:
            return importlib.import_module(TOOL_MODULES[command]).main(overrides)
        from pipeline.config import load

        if command == "config":
            from omegaconf import OmegaConf

            # Only what composes the config: building the model to check it (torch, ~3 s) is `--check`'s
            check = "--check" in overrides
            sources: dict[str, str] = {}
            cfg = load([o for o in overrides if o != "--check"], sources=sources, model=check)
            print(OmegaConf.to_yaml(cfg), end="")
            print("# the file (or section) that set each value, the last of the layers in pipeline/config.py (the rest are "
                  "pipeline/schema.py defaults):")
            for key, source in sources.items():
                print(f"#   {key} = {OmegaConf.select(cfg, key)}   <- {source}")
            return 0
        os.environ.setdefault("WANDB_SILENT", "true")
        if os.environ.get("DVC_STAGE"):  # run by DVC: refuse a dvc.yaml that params.yaml no longer describes
            importlib.import_module("pipeline.dvc_file").check_current()
        module = importlib.import_module(f"pipeline.stages.{command}")
        quiet_libraries()  # after the import: Lightning sets its loggers' levels when imported
        # download / tokenize / report read no model code: a model file that fails cannot stop them
        cfg = load(overrides, model=getattr(module, "NEEDS_MODEL", True), task_bound=getattr(module, "TASK_BOUND", True))
        module.main(cfg)
    except ConfigError as e:
        print(f"{command}: {e}", file=sys.stderr)  # bad config or a missing / stale input: exit 2, nothing written
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (train saves last.ckpt and says so itself)
        print(f"{command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return 0
