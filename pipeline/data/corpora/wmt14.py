"""Translation: WMT14 English -> German (train: Europarl, Common Crawl, News Commentary; val
newstest2013; test newstest2014), full-size web downloads."""
from __future__ import annotations

import itertools
import re
import zipfile
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import (HF_DATASETS_INFOS, PairWriter, UrlSource, register_corpus, zip_lines,
                                        zip_member)


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
