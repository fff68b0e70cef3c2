"""The Wikipedia corpus (wiki-bytes): markup stripped to prose, articles whole in one split, byte-level streams.

The `network` test fetches the gensim sdist (23 MB) from PyPI into the project's `data/downloads/` cache
(sha256-checked; later runs reuse it). Offline: -m "not network"."""
from __future__ import annotations

import bz2
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.data.corpora.wikipedia import ENWIKI_SDIST, HELD_OUT, read_articles, read_enwiki, wikitext_to_paragraphs
from pipeline.data.fetch import fetch_corpus
from pipeline.stages.tokenize import tokenize_task
from test_data_breadth import task_config

ARTICLE = """{{Infobox person|name=Ada {{nowrap|Lovelace}}|image=Ada.jpg}}
'''Augusta Ada King''' (10 December 1815 – 27 November 1852) was an [[England|English]] [[mathematician]].<ref name="a">{{cite book|title=X}}</ref> She wrote notes&nbsp;on the [[Analytical Engine]].<ref>Plain ref</ref>
[[File:Ada.jpg|thumb|Ada, painted by [[Alfred Chalon]]]]
<!-- a comment that is not prose -->
== Early life ==
Her father was [[Lord Byron]]; see [http://example.org/byron the Byron site] or http://example.org.
{| class="wikitable"
|-
| a table cell || {{flag|UK}}
|}
* A list item that is a sentence of prose.
* [[See also]]
[[Category:1815 births]]
[[fr:Ada Lovelace]]
"""


def test_markup_is_stripped_to_prose():
    assert wikitext_to_paragraphs(ARTICLE) == [
        "Augusta Ada King (10 December 1815 – 27 November 1852) was an English mathematician. "
        "She wrote notes on the Analytical Engine.",
        "Early life",
        "Her father was Lord Byron; see the Byron site or",
        "A list item that is a sentence of prose.",
    ]


def _dump(pages: list[tuple[str, int, str, bool]]) -> bytes:
    ns, marker = "http://www.mediawiki.org/xml/export-0.10/", '<redirect title="x" />'
    body = "".join(
        f"<page><title>{t}</title><ns>{n}</ns>{marker if redirect else ''}"
        f"<revision><text xml:space=\"preserve\">{text}</text></revision></page>"
        for t, n, text, redirect in pages)
    return f'<mediawiki xmlns="{ns}">{body}</mediawiki>'.encode()


def test_only_main_namespace_articles_are_read():
    dump = _dump([("Ada", 0, "Ada was a &lt;b&gt;mathematician&lt;/b&gt;.", False),
                  ("Talk:Ada", 1, "A talk page.", False), ("AdaL", 0, "#REDIRECT [[Ada]]", True),
                  ("Old", 0, "#redirect [[Ada]]", False), ("Empty", 0, "{{stub}}", False)])
    assert read_articles(dump, "dump.xml") == [("Ada", ["Ada was a mathematician."])]
    with pytest.raises(ConfigError, match="dump.xml: not a readable MediaWiki XML dump"):
        read_articles(b"<mediawiki><page>", "dump.xml")


def _sdist(path: Path, articles: int) -> Path:
    """A tar.gz laid out as the gensim sdist, holding a bz2 dump of `articles` one-paragraph articles."""
    dump = bz2.compress(_dump([(f"A{i}", 0, f"Article number {i} is about topic {i}.", False) for i in range(articles)]))
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(ENWIKI_SDIST.member)
        info.size = len(dump)
        tf.addfile(info, io.BytesIO(dump))
    return path


def test_articles_are_assigned_whole_to_one_split(tmp_path):
    read_enwiki([_sdist(tmp_path / "gensim.tar.gz", 3 * HELD_OUT)], tmp_path)
    lines = {s: (tmp_path / f"{s}.txt").read_text(encoding="utf-8").splitlines() for s in ("train", "valid", "test")}
    assert lines["test"] == [f"Article number {i} is about topic {i}." for i in (0, 20, 40)]
    assert lines["valid"] == [f"Article number {i} is about topic {i}." for i in (1, 21, 41)]
    assert len(lines["train"]) == 3 * HELD_OUT - 6 and not set(lines["train"]) & set(lines["test"] + lines["valid"])
    with pytest.raises(ConfigError, match=r"10 articles, expected over 40"):
        read_enwiki([_sdist(tmp_path / "small.tar.gz", 10)], tmp_path)


@pytest.mark.network
def test_wikipedia_bytes_end_to_end(tmp_path, downloads_dir):
    task = task_config("wiki-bytes")
    raw, out = tmp_path / "raw", tmp_path / "tok"
    fetch_corpus(task.corpus, raw, downloads_dir)
    text = {s: (raw / f"{s}.txt").read_text(encoding="utf-8") for s in ("train", "valid", "test")}
    words = {s: len(t.split()) for s, t in text.items()}
    assert 380_000 < words["train"] < 420_000 and 15_000 < words["valid"] < 40_000 and 15_000 < words["test"] < 40_000
    for t in text.values():  # the markup is gone (a few literal braces in prose may stay)
        assert t.count("{{") + t.count("[[") + t.count("<ref") < 10
    paragraphs = {s: {line for line in t.splitlines() if len(line.split()) > 20} for s, t in text.items()}
    assert not paragraphs["test"] & paragraphs["train"]  # whole articles: no paragraph of prose in both
    meta = tokenize_task(task, raw, out)
    assert meta["vocab_size"] < 300  # bytes + specials
    train = np.load(out / "train.ids.npy")
    assert len(train) == len(text["train"].encode("utf-8"))  # one id per byte, <eos> in place of each newline
