"""Language modelling: WikiText-2 and WikiText-103 (word level), full-size web downloads."""
from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.data.corpora.base import HF_DATASETS_INFOS, UrlSource, register_corpus, zip_member


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
