"""Corpus catalogue: where each corpus comes from (with the sha256 of every artifact) and how its
raw files are extracted. One module per corpus family; `base` holds the registry and helpers.

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

Fetching lives in `pipeline.data.fetch`; this package only describes. The corpora are fetched at
run time and never committed: several have restricted licences (see /work/shared/data-sources.md).

Every module of this package other than `base` is imported here (found by listing the package, so
no list to keep in step); each registers its corpora with `register_corpus`. A new corpus is a new
module: no other file changes.
"""
from __future__ import annotations

import importlib
import pkgutil

from pipeline.data.corpora.base import (CORPORA, Corpus, PyPISource, Reader, Source, SyntheticSource, UrlSource,
                                        get_corpus, register_corpus)

CORPUS_MODULES: tuple[str, ...] = tuple(sorted(
    info.name for info in pkgutil.iter_modules(__path__) if info.name != "base" and not info.name.startswith("_")))
for _name in CORPUS_MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["CORPORA", "CORPUS_MODULES", "Corpus", "PyPISource", "Reader", "Source", "SyntheticSource", "UrlSource",
           "get_corpus", "register_corpus"]
