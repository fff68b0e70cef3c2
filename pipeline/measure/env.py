"""What a measurement ran on, stored with every speed and memory result, so numbers are never
compared blind (`fingerprint`); and the provenance of a run (`provenance`: host, git revision,
time), which goes to untracked logs and W&B only: in a DVC output it would change dvc.lock on
every run."""
from __future__ import annotations

import datetime
import platform
import socket
import subprocess
from pathlib import Path

import torch

from pipeline.config import ROOT


# What decides a result: the code and configs. Not the outputs (runs/, reports/, results/, dvc.lock),
# which are git-tracked too and which DVC deletes or rewrites as stages run, so they always differ.
SOURCE_PATHS = ("pipeline", "conf", "params.yaml", "dvc.yaml", "pyproject.toml", "constraints.txt")


def git_sha(root: Path = ROOT) -> str:
    """HEAD's short hash, `-dirty` when code or configs (SOURCE_PATHS, untracked files included) differ
    from it; "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *SOURCE_PATHS], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def configured_attention_kernel(device: torch.device) -> str:
    """What the settings allow, not what ran: on CUDA the enabled SDPA backends; on CPU SDPA picks
    the fused kernel or the math path per call. pipeline/measure/kernels.py observes the kernel."""
    if device.type == "cuda":
        b = torch.backends.cuda
        enabled = [n for n, on in (("flash", b.flash_sdp_enabled()), ("mem_efficient", b.mem_efficient_sdp_enabled()),
                                   ("math", b.math_sdp_enabled())) if on]
        return "sdpa(" + ",".join(enabled) + ")"
    return "sdpa(cpu: fused or math, not probed)"


def fingerprint(device: torch.device | None = None, attention_kernel: str | None = None) -> dict:
    """attention_kernel: the kernel measured by pipeline.measure.kernels.probe (its summary);
    without it, the configured backends (configured_attention_kernel)."""
    device = device or torch.device("cpu")
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "attention_kernel": attention_kernel or configured_attention_kernel(device),
    }


def provenance() -> dict:
    return {"git_sha": git_sha(), "host": socket.gethostname(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
