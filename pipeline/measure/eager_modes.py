"""Dispatch modes that do not import torch._dynamo.

torch wraps the `__torch_dispatch__` of every TorchDispatchMode subclass (ours and torch's own
FlopCounterMode) in torch._disable_dynamo, whose first call imports torch._dynamo so that a compiled
graph never traces into the mode. That import is 1.4-2 s of CPU, paid by every evaluate, measure and
benchmark process before its first measurement, for a compiler this project never runs: nothing here
calls torch.compile, and nothing can be compiling while torch._dynamo is not even imported.
"""
from __future__ import annotations

import contextlib
import sys

from torch.utils._python_dispatch import TorchDispatchMode

_RESOLVED = "__dynamo_disable"  # where torch._disable_dynamo caches the disabled function on first call


class EagerDispatchMode(TorchDispatchMode):
    """Base of this project's dispatch modes: their __torch_dispatch__ is left unwrapped."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # private torch API: where it is gone, the wrapping is just kept
        return False


@contextlib.contextmanager
def without_dynamo_import(mode_cls: type):
    """Within the block, a torch mode class's wrapped __torch_dispatch__ runs as is instead of first
    importing torch._dynamo (when dynamo is already imported, nothing changes)."""
    raw = getattr(mode_cls.__dict__.get("__torch_dispatch__"), "__wrapped__", None)
    if raw is None or "torch._dynamo" in sys.modules or hasattr(raw, _RESOLVED):
        yield
        return
    setattr(raw, _RESOLVED, raw)
    try:
        yield
    finally:
        if getattr(raw, _RESOLVED, None) is raw:
            delattr(raw, _RESOLVED)
