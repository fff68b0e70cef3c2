"""Writing the report's files atomically (temp file + rename): a killed report stage leaves each file
as it was or absent, never half written (as pipeline/artifacts.py writes the stages' JSON)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure, its format from the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    os.replace(tmp, path)
