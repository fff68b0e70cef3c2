"""Resolve the configured W&B mode (auto | online | offline | disabled) to the one wandb.init gets.

Precedence: `logger.mode=disabled` always holds; otherwise the WANDB_MODE environment variable (the
user's explicit choice for this shell/job) beats the config; `auto` means online when credentials are configured and the W&B service (WANDB_BASE_URL,
else api.wandb.ai) accepts a TCP connection within 3 s, otherwise offline, so a run
on a machine without a W&B login never prompts or fails, it just writes an offline run to sync later.
"""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

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
        if not _logged_in():
            return "offline"
        host, port = _service_address()
        if not _reachable(host, port):
            print(f"[wandb] logger.mode=auto: W&B service {host}:{port} unreachable within "
                  f"{REACH_TIMEOUT_S:g} s; logging offline (sync later with `wandb sync`)", file=sys.stderr)
            return "offline"
        return "online"
    return _normalise(mode, source="logger.mode")


def _normalise(mode: str, source: str) -> str:
    mode = _ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"{source}='{mode}' is not a W&B mode; use one of: auto, {', '.join(MODES)}")
    return mode


REACH_TIMEOUT_S = 3.0  # a TCP connect to the W&B service; beyond this `auto` logs offline


def _service_address() -> tuple[str, int]:
    """(host, port) of the configured W&B service: WANDB_BASE_URL, else https://api.wandb.ai."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL", "").strip() or "https://api.wandb.ai")
    if not url.hostname:  # e.g. "localhost:8080" without a scheme
        url = urlsplit("https://" + url.geturl())
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or "api.wandb.ai", port


def _reachable(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> bool:
    """True when a TCP connection to host:port opens within `timeout` seconds (DNS included)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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
