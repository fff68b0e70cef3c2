"""Language modelling: English Wikipedia articles (WikiText's domain), from a dump sample that ships in
the `gensim` sdist on PyPI. Long documents for perplexity by context position at 2K bytes and more.

The dump is raw wikitext; the reader keeps the prose a reader sees (headings, paragraphs, list items,
link texts) and drops what is not prose: templates, tables, references, files, categories, HTML. One
paragraph per line; articles are assigned whole to a split, so no test article was seen in training.
"""
from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import PyPISource, read_tar_member, register_corpus, write_text

ENWIKI_SDIST = PyPISource(
    package="gensim", version="4.4.0", filename="gensim-4.4.0.tar.gz",
    sha256="a3f5b626da5518e79a479140361c663089fe7998df8ba52d56e1ded71ac5bdf5",
    member="gensim-4.4.0/gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    sdist=True,  # the wheels are per platform (different bytes, different sha256); the sdist is one file
)
# Every HELD_OUT-th article (in dump order) goes to test, the one after it to valid: ~5% each, whole articles.
HELD_OUT = 20

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_DROP_ELEMENTS = re.compile(r"<(math|gallery|timeline|score|syntaxhighlight|source|pre)\b[^>]*>.*?</\1>", re.S | re.I)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")  # innermost first, repeated: templates nest
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)  # innermost table first, repeated
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")  # innermost first: a file's caption holds links
_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")
_BARE_URL = re.compile(r"https?://\S+")
_EMPHASIS = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
# [[File:x|...]], [[Category:x]], [[fr:x]] (interlanguage): not prose
_NAMESPACE = re.compile(r"^\s*(file|image|media|category|wikipedia|wp|template|help|portal|special|"
                        r"[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)


def _until_stable(pattern: re.Pattern, replace, text: str) -> str:
    while True:
        new = pattern.sub(replace, text)
        if new == text:
            return text
        text = new


def _link_text(match: re.Match) -> str:
    inner = match.group(1)
    if _NAMESPACE.match(inner):
        return ""
    return inner.rsplit("|", 1)[-1]


def wikitext_to_paragraphs(wikitext: str) -> list[str]:
    """The prose of one article's wikitext, one paragraph (or heading, or list item) per entry."""
    text = _COMMENT.sub("", wikitext)
    text = _REF.sub("", text)
    text = _DROP_ELEMENTS.sub("", text)
    text = _until_stable(_TEMPLATE, "", text)
    text = _until_stable(_TABLE, "", text)
    text = _until_stable(_LINK, _link_text, text)
    text = _EXTERNAL.sub(r"\1", text)
    text = _BARE_URL.sub("", text)
    text = _TAG.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    paragraphs, current = [], []
    for line in text.split("\n"):
        line = line.strip()
        heading = _HEADING.match(line)
        if heading or not line or line[0] in "*#:;|!{}":
            if current:
                paragraphs.append(" ".join(current))
                current = []
            if heading and heading.group(2):
                paragraphs.append(heading.group(2))
            elif line[:1] in "*#:;":
                item = line.lstrip("*#:; ").strip()
                if len(item.split()) > 2:  # list items that are prose, not "See also" link lists
                    paragraphs.append(item)
            continue
        current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    return [" ".join(p.split()) for p in paragraphs if p.strip() and any(c.isalpha() for c in p)]


def read_articles(dump: bytes, where: str) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every main-namespace article of a MediaWiki XML dump, redirects skipped."""
    try:
        root = ET.fromstring(dump)
    except ET.ParseError as e:
        raise ConfigError(f"{where}: not a readable MediaWiki XML dump ({e}); delete the download and re-run") from e
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    articles = []
    for page in root.iter(f"{ns}page"):
        if (page.findtext(f"{ns}ns") or "0") != "0" or page.find(f"{ns}redirect") is not None:
            continue
        wikitext = page.findtext(f"{ns}revision/{ns}text") or ""
        if wikitext.lstrip().lower().startswith("#redirect"):
            continue
        paragraphs = wikitext_to_paragraphs(wikitext)
        if paragraphs:
            articles.append((page.findtext(f"{ns}title") or "", paragraphs))
    return articles


@register_corpus(
    "enwiki", kind="lm", sources=[ENWIKI_SDIST], raw_files=("train.txt", "valid.txt", "test.txt"),
    description="English Wikipedia articles (a 2016 dump sample from gensim's test data), markup stripped, "
                "one paragraph per line; whole articles per split (every 20th to test, the next to valid)",
    licence="CC BY-SA 3.0 (Wikipedia); fetched, not committed",
)
def read_enwiki(artifacts: list[Path], out_dir: Path) -> None:
    member = ENWIKI_SDIST.member
    where = f"{artifacts[0]}:{member}"
    try:
        dump = bz2.decompress(read_tar_member(artifacts[0], member))
    except (OSError, EOFError) as e:
        raise ConfigError(f"{where}: not a readable bz2 stream ({e}); delete the download and re-run") from e
    articles = read_articles(dump, where)
    if len(articles) < 2 * HELD_OUT:
        raise ConfigError(f"{where}: {len(articles)} articles, expected over {2 * HELD_OUT}")
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, (_, paragraphs) in enumerate(articles):
        split = "test" if i % HELD_OUT == 0 else "valid" if i % HELD_OUT == 1 else "train"
        splits[split] += paragraphs
    for split, paragraphs in splits.items():
        write_text(out_dir / f"{split}.txt", "\n".join(paragraphs) + "\n")
