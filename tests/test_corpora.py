"""The corpus catalogue (pipeline/data/corpora/): one module per corpus family, found by listing the
package, so the tasks, the registry and the modules cannot drift apart."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

import pipeline.data.corpora as corpora
from pipeline.config import ROOT

PACKAGE_DIR = Path(corpora.__file__).parent
# A reader module must not reach the stages (which import the catalogue through fetch), the models
# or torch: the download stage stays light and free of import cycles.
FORBIDDEN = ("torch", "pipeline.stages", "pipeline.models", "pipeline.data.fetch", "pipeline.data.datamodule")


def corpus_module(corpus: corpora.Corpus) -> str:
    module = corpus.reader.__module__
    prefix = corpora.__name__ + "."
    return module[len(prefix):] if module.startswith(prefix) else module


def test_every_task_corpus_is_registered():
    tasks = sorted((ROOT / "conf" / "task").glob("*.yaml"))
    assert tasks
    for path in tasks:
        corpus_id = OmegaConf.load(path).task.corpus
        assert corpus_id in corpora.CORPORA, f"{path.name}: task.corpus '{corpus_id}' is not registered"
        assert corpora.get_corpus(corpus_id).id == corpus_id


def test_every_corpus_has_its_own_module_and_every_module_a_corpus():
    on_disk = {m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)])} - {"base"}
    assert set(corpora.CORPUS_MODULES) == on_disk  # all imported, none from a hand-kept list
    owners = {cid: corpus_module(c) for cid, c in corpora.CORPORA.items()}
    for cid, module in owners.items():
        assert module in on_disk, f"corpus '{cid}' is registered by {module}, not by a corpus module"
    assert set(owners.values()) == on_disk, f"modules registering no corpus: {on_disk - set(owners.values())}"
    # the registry's one source of truth is base; the package re-exports it
    assert corpora.CORPORA is corpora.base.CORPORA


def test_corpus_modules_import_nothing_heavy_or_cyclic():
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
                if path.name not in ("__init__.py", "base.py"):
                    # from base, never from the half-initialised package while it imports its modules
                    assert name != corpora.__name__, f"{path.name}: import from {corpora.__name__}.base instead"
    code = ("import sys, pipeline.data.corpora; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('pipeline.stages')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
