"""Reads W&B's offline run files (run-<id>.wandb) back, for tests: the file is a LevelDB-style log
(7-byte header ":W&B" + magic + version; 32 KiB blocks; records = crc32, little-endian length, type,
payload; types 1 full, 2 first, 3 middle, 4 last) of `wandb_internal_pb2.Record` protobufs."""
from __future__ import annotations

import json
from pathlib import Path

BLOCK = 32 * 1024


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, out, pending = 7, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def run_contents(wandb_dir: Path, run_id: str) -> tuple[dict, set[str]]:
    """(summary {key: value}, history keys) over every offline segment of run `run_id`."""
    summary, history = {}, set()
    for path in sorted(wandb_dir.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "summary":
                for item in record.summary.update:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "history":
                history |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return summary, history


def inspect(run_dir: Path) -> dict:
    """`wandb leet inspect` (wandb >= 0.31) of an offline run directory, read without uploading: its
    --summary (config, summary, tags, name, state) plus `run_group`, `job_type` from the run record and
    `history`, the keys of every history row."""
    import os
    import subprocess
    import sys
    import tempfile

    def leet(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", *args, str(Path(run_dir).resolve())],
                              capture_output=True, text=True, check=True, cwd=scratch,
                              env={**os.environ, "WANDB_DIR": scratch}).stdout

    # The wandb CLI appends a debug log to ./wandb/ when that folder exists (a checkout that ran `make repro`
    # has one): run it in a scratch folder, so the tests leave the working tree as they found it.
    with tempfile.TemporaryDirectory(prefix="wandb-cli-") as scratch:
        out = json.loads(leet("--summary", "--json"))
        records = [json.loads(line) for line in leet("--json").splitlines() if line.startswith("{")]
    run = next(r["run"] for r in records if r["type"] == "run")
    out.update(run_group=run.get("run_group"), job_type=run.get("job_type"),
               history=set().union(*(r["history"]["item"] for r in records if r["type"] == "history")))
    return out
