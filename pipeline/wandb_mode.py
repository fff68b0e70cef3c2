"""Resolve the configured W&B mode (auto | online | offline | disabled) to the one wandb.init gets.

Precedence: `logger.mode=disabled` always holds; otherwise the WANDB_MODE environment variable (the
user's explicit choice for this shell/job) beats the config; `auto` means online when credentials are configured, otherwise offline, so a run
on a machine without a W&B login never prompts or fails, it just writes an offline run to sync later.
"""
from __future__ import annotations

import os

MODES = ("online", "offline", "disabled")
# Spellings wandb itself accepts in WANDB_MODE, mapped to the three modes above.
_ALIASES = {"dryrun": "offline", "run": "online"}


def resolve_mode(mode: str) -> str:
    """Return "online", "offline" or "disabled" for a config mode ("auto" allowed)."""
    if mode.strip().lower() == "disabled":  # an explicit `logger.mode=disabled` always holds
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return _normalise(env, source="environment variable WANDB_MODE")
    mode = mode.strip().lower()
    if mode == "auto":
        return "online" if _logged_in() else "offline"
    return _normalise(mode, source="logger.mode")


def _normalise(mode: str, source: str) -> str:
    mode = _ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"{source}='{mode}' is not a W&B mode; use one of: auto, {', '.join(MODES)}")
    return mode


def _logged_in() -> bool:
    """True when W&B credentials are available, without prompting or contacting the server."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        # verify=False: no network round trip; prompt=False: never block a pipeline on input.
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # wandb missing or its credential store unreadable: stay offline
        return False


def run_group(group: str | None, task: str | None, experiment: str = "") -> str:
    """The W&B group of a run: `logger.group` if set, else its task, inside a DVC experiment prefixed
    with the experiment's name (`dvc exp run` sets DVC_EXP_NAME): W&B's grouped charts average a
    group's runs, which is meaningful across seeds and models of one task, never across tasks or
    experiments. A run of no single task (the report) gets the experiment's name, else `experiment`."""
    if group:
        return group
    exp = os.environ.get("DVC_EXP_NAME")
    if task is None:
        return exp or experiment
    return f"{exp}/{task}" if exp else task


def run_tags(tags: list[str]) -> list[str]:
    """`tags` plus `dvc-exp:<name>` inside a DVC experiment."""
    name = os.environ.get("DVC_EXP_NAME")
    return [*tags, f"dvc-exp:{name}"] if name else list(tags)
