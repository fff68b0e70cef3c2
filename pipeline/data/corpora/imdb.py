"""Classification: IMDB Large Movie Review Dataset (Maas et al. 2011), a full-size web download."""
from __future__ import annotations

import csv
import re
import tarfile
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import HF_DATASETS_INFOS, UrlSource, collapse, register_corpus

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
