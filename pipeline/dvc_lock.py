"""dvc.lock keeps only the stages of dvc.yaml; entries of stages that left the grid wait in a stash.

DVC never drops a lock entry whose stage left dvc.yaml, and it re-reads and rewrites the whole lock
around every stage it runs (pure-Python YAML: about a second per thousand entries' worth of lines), so a
lock carrying old grids slows every stage of every later repro. `python -m pipeline grid` moves those
entries to STASH (untracked, under .dvc/tmp) and puts an entry back when its stage returns to the grid,
so narrowing the grid and widening it again keeps stages up to date. DVC still checks every restored
entry against the files on disk: a stage whose inputs or outputs changed meanwhile runs again.

Edited as text, one top-level entry at a time, so every kept entry keeps DVC's own bytes.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.artifacts import atomic_write

ENTRY = re.compile(r"^  (\S[^\n]*):\n", re.M)  # a stage's entry under `stages:` (DVC indents by 2)
STASH = Path(".dvc") / "tmp" / "seqarena-stale-lock-entries.yaml"


def split(text: str) -> tuple[str, dict[str, str]]:
    """(the text before the first entry, {stage name: its entry's text}) of a dvc.lock."""
    starts = list(ENTRY.finditer(text))
    if not starts:
        return text, {}
    entries = {}
    for match, following in zip(starts, [*starts[1:], None]):
        entries[match.group(1).strip("'\"")] = text[match.start():following.start() if following else len(text)]
    return text[:starts[0].start()], entries


def sync(root: Path, stage_names: set[str]) -> tuple[list[str], list[str]]:
    """Make root/dvc.lock hold entries for stage_names only: stash the others, restore stashed ones that
    are back in the grid. Returns (stashed, restored) stage names."""
    lock_path, stash_path = root / "dvc.lock", root / STASH
    if not lock_path.exists():
        return [], []
    head, entries = split(lock_path.read_text(encoding="utf-8"))
    if not head.rstrip().endswith("stages:"):  # not the layout DVC writes: leave it to DVC
        return [], []
    stashed = split(stash_path.read_text(encoding="utf-8"))[1] if stash_path.exists() else {}
    stale = [name for name in entries if name not in stage_names]
    restored = [name for name in stashed if name in stage_names and name not in entries]
    if not stale and not restored:
        return [], []
    stashed.update({name: entries.pop(name) for name in stale})
    entries.update({name: stashed.pop(name) for name in restored})
    stash_path.parent.mkdir(parents=True, exist_ok=True)
    # the stash first: a crash in between leaves an entry in both files, never in neither
    atomic_write(stash_path, lambda tmp: tmp.write_text("stages:\n" + "".join(stashed.values()), encoding="utf-8"))
    atomic_write(lock_path, lambda tmp: tmp.write_text(head + "".join(entries.values()), encoding="utf-8"))
    return stale, restored
