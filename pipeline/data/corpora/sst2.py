"""Classification: SST-2 from GLUE, a full-size web download."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.corpora.base import HF_DATASETS_INFOS, UrlSource, collapse, register_corpus, zip_lines, zip_member

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
