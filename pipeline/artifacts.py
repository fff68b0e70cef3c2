"""Typed artifacts: what each stage writes and the next one reads, with one schema version each.

Written only through `write()` (temp file + rename: a killed stage leaves the old file or none,
never half a JSON) and read only through `read()`, which names the file, the version it found and
the stage to re-run when a file is missing, corrupt, from an older schema or of another type.
Where each file lives is pipeline/paths.py.

Also here, as every stage imports this module: `atomic_write` (what every writer of a stage output
uses) and `run_folder_lock` (one train or evaluate per run folder at a time).
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

from pipeline.schema import ConfigError

RUN_LOCK = ".lock"  # in runs/<task>/<model>/, beside the DVC outputs (git- and DVC-ignored)


class ArtifactError(ConfigError):
    """An input artifact that cannot be used as it is; the message says what to re-run."""


def temp_path(path: Path) -> Path:
    """A hidden temp name beside `path`, unique to this process and call: two writers of the same file
    never write into each other's temp file. `.*.tmp` is git- and DVC-ignored."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename tmp onto path after its bytes reach the disk: after a crash or power loss, path holds the
    old content or the new, never a renamed but empty file."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)  # the rename itself is an entry of the directory
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(temp path), then rename it onto path: a killed writer leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


@contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on a run folder (runs/<task>/<model>/) for the block: a second train or
    evaluate of the same folder stops at once, naming the process that holds it, instead of both
    writing the same checkpoints. The kernel drops the lock when its holder exits, however it ends, so
    a lock file left behind by a killed process is free."""
    import fcntl  # POSIX; the pipeline runs on Linux and macOS

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder} is in use by {lock_holder(path)}; one train or evaluate of a run "
                              f"folder at a time: wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{command_line()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def command_line() -> str:
    """This process's command, as typed (`python -m pipeline ...` rather than the path of __main__.py)."""
    program = "python -m pipeline" if sys.argv[0].endswith(os.path.join("pipeline", "__main__.py")) else sys.argv[0]
    return " ".join([program, *sys.argv[1:]])


def lock_holder(path: Path, wait_s: float = 2.0) -> str:
    """'pid N (its command line)' from a held lock file; its holder writes it right after locking."""
    deadline = time.monotonic() + wait_s
    while True:
        pid, _, command = path.read_text(encoding="utf-8", errors="replace").partition("\n")
        if pid.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return f"pid {pid.strip() or '?'} ({command.strip() or 'command unknown'})"


def read_json(path: Path, rerun: str) -> Any:
    if not path.exists():
        raise ArtifactError(f"{path} is missing: run {rerun} first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}): re-run {rerun}") from None


@dataclass
class Artifact:
    SCHEMA: ClassVar[int] = 1
    KIND: ClassVar[str] = ""  # written as "artifact", so a foreign JSON is recognised

    def to_dict(self) -> dict:
        return {"artifact": self.KIND, "schema": self.SCHEMA, **dataclasses.asdict(self)}

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, path: Path | str, rerun: str) -> "Artifact":
        if not isinstance(data, dict) or data.get("artifact") != cls.KIND:
            found = data.get("artifact") if isinstance(data, dict) else type(data).__name__
            raise ArtifactError(f"{path}: not a {cls.KIND} file (found {found!r}): re-run {rerun}")
        if data.get("schema") != cls.SCHEMA:
            raise ArtifactError(f"{path}: key 'schema' is {data.get('schema')!r}, this code reads {cls.KIND} "
                                f"schema {cls.SCHEMA}: re-run {rerun}")
        names = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k not in ("artifact", "schema")}
        unknown = sorted(set(body) - names)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in body
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise ArtifactError(f"{path}: {cls.KIND} fields do not match schema {cls.SCHEMA}"
                                f"{' (unknown: ' + ', '.join(unknown) + ')' if unknown else ''}"
                                f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}: re-run {rerun}")
        return cls(**body)

    @classmethod
    def read(cls, path: Path, rerun: str) -> "Artifact":
        return cls.from_dict(read_json(path, rerun), path, rerun)


@dataclass
class Meta(Artifact):
    """<tokenized>/<task>/meta.json: what the tokenize stage wrote (pipeline/kinds/<kind>.py says
    which arrays a kind has)."""

    SCHEMA: ClassVar[int] = 2
    KIND: ClassVar[str] = "meta"
    task: str
    kind: str
    corpus: str
    tokenizer: str
    vocab_size: int
    special: dict[str, int]
    splits: dict[str, dict]  # per split: examples, tokens, length statistics (+ kind-specific counts)
    baseline: Optional[dict] = None  # {"name", "value"}: the chance level on the test split
    max_len: Optional[int] = None  # the task's truncation length (classification, translation)
    labels: Optional[list[str]] = None  # class names; label ids follow this order
    tokens: Optional[list[str]] = None  # synthetic: each id's string
    synthetic: Optional[dict] = None  # synthetic: the generator's parameters and version
    split_lengths: Optional[dict[str, int]] = None  # synthetic: sequence length per split
    extra_test_splits: list[str] = field(default_factory=list)  # e.g. test_2x, test_4x
    joint_vocabulary: bool = False  # translation: one vocabulary for both sides
    bleu_signature: Optional[str] = None  # translation: sacreBLEU signature of the baseline
    hygiene: Optional[dict] = None  # duplicate texts dropped before splitting / moved to train / counted
    source: dict = field(default_factory=dict)  # the raw corpus's source.json
    checksums: Optional[dict[str, str]] = None  # file name -> "blake2b:<hex>" of every array file (older: none)


@dataclass
class TrainResult(Artifact):
    """<runs>/<task>/<model>/train.json: one entry per seed (steps, tokens, best val, params). No time:
    wall time and tokens/s are in logs/ (pipeline/paths.py log_dir) and W&B."""

    SCHEMA: ClassVar[int] = 2
    KIND: ClassVar[str] = "train_result"
    task: str
    model: str
    profile: str
    config: dict
    data: dict
    seeds: list[dict]
    tuning: Optional[dict] = None  # tune.lrs set: per candidate lr its validation metric, and the chosen lr


@dataclass
class EvalResult(Artifact):
    """<runs>/<task>/<model>/eval.json: the test result of one (task, model) over its seeds, with
    FLOPs and receptive field (stages/evaluate.py). Deterministic: speed and memory, which depend on
    the machine, are the measure stage's SpeedResult."""

    SCHEMA: ClassVar[int] = 2
    KIND: ClassVar[str] = "eval_result"
    task: str
    task_kind: str
    model: str
    backbone: str
    metric: str
    higher_is_better: bool
    config: dict
    params: dict  # total / backbone / embedding_and_head
    sizing: dict
    flops_per_token: Optional[float]
    receptive_field: Optional[dict]
    baseline: Optional[dict]
    reference: str
    buckets: dict  # edges, labels, unit
    seeds: list[dict]  # per seed: overall, per_bucket, count (+ train summary, kind extras)
    overall: float  # mean over seeds
    overall_std: Optional[float]
    per_bucket: list[Optional[float]]
    count: list[int]
    # 95% intervals: {lo, hi, value, n, method} overall, and one per bucket (None: no examples there)
    overall_interval: Optional[dict] = None
    per_bucket_interval: Optional[list] = None
    # synthetic: per extra test split (test_2x ..., MQAR's test_4pairs ...): overall, interval, length
    extrapolation: Optional[dict] = None
    data: Optional[dict] = None  # test_examples, and the duplicates dropped / moved / counted by tokenize
    # translation (the metric is BLEU): chrF, teacher-forced target perplexity, decoding, samples
    chrf: Optional[float] = None
    chrf_interval: Optional[dict] = None  # {lo, hi, method}
    # the backbone family's claimed costs (models/base.Complexity): the report's recall claims read
    # its decode entry (a KV cache: attention; "fixed state": a recurrence)
    claim: Optional[dict] = None
    target_ppl: Optional[float] = None
    bleu_signature: Optional[str] = None
    samples: Optional[list[dict]] = None
    decoding: Optional[dict] = None

    def headline(self) -> dict:
        """metrics.json: the same few keys for every run, so `dvc metrics show` / `dvc exp show`
        read as one table (the metric's name is a column; the file path names task and model)."""
        interval = self.overall_interval or {}
        return {"metric": self.metric, "test": self.overall, "test_lo": interval.get("lo"),
                "test_hi": interval.get("hi"), "params": self.params["backbone"],
                "flops_per_token": self.flops_per_token, "setting": self.setting()}

    # The task settings that change what the metric means: a number is comparable across commits only with them
    SETTING_KEYS: ClassVar[tuple[str, ...]] = ("seq_len", "num_pairs", "num_copy")

    def setting(self) -> dict:
        task = self.config.get("task") or {}
        synthetic = task.get("synthetic") or {}
        found = {"max_len": task.get("max_len"), "seeds": len(self.seeds)}
        if task.get("kind") == "recall":
            found.update({k: synthetic.get(k) for k in self.SETTING_KEYS if synthetic.get(k) is not None})
        return {k: v for k, v in found.items() if v is not None}


@dataclass
class SpeedResult(Artifact):
    """<runs>/<task>/<model>/speed.json: speed and memory of one trained (task, model) on the machine
    that measured it (stages/measure.py). A measurement: committed with that machine's fingerprint,
    re-measured by DVC when the checkpoint or the code changes."""

    KIND: ClassVar[str] = "speed_result"
    task: str
    model: str
    profile: str
    env: dict  # the machine: torch, device, CPU, threads, the attention kernel that ran (+ its probe)
    # forward passes at each bucket's upper length: lengths, batch_size, device, infer_tokens_per_s,
    # latency_ms, peak_mem_mb (one per length)
    infer: dict
    # one training step (forward, backward, AdamW) at the task's batch size and max_len:
    # length, batch_size, tokens_per_s, step_ms, peak_mem_mb
    train: dict


@dataclass
class BenchResult(Artifact):
    """<bench>/<model>.json: the length sweep of one model (pipeline/measure/sweep.py)."""

    KIND: ClassVar[str] = "bench_result"
    model: str
    params: dict  # backbone / total
    env: dict
    cells: list[dict]  # one per length: status, times, peak memory, FLOPs, MFU
    decode: dict  # status, cells (latency per context), parallel_speedup
    fits: dict  # fitted exponents with intervals and the verdict per measured quantity
    config: dict  # model and bench sections
    claim: Optional[dict] = None  # the family's claimed complexity (pipeline/models/base.py)
    backbone: str = ""
    causal: Optional[bool] = None
    sizing: Optional[dict] = None
    d_model: Optional[int] = None
    profile: str = ""
    matmul_peak_flops: Optional[dict] = None  # FLOP/s per dtype measured in the same run
    wall_s: Optional[float] = None
