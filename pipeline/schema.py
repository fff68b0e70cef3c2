"""The config schema: typed dataclasses for every section, and the one error type users see.

Torch-free and model-free on purpose: `pipeline.config` (the loader) and every stage that only
reads data import this, and models subclass `ModelConfig` here without a cycle through the loader.
A backbone's own schema is the dataclass it registers with (pipeline/models/registry.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration problem, worded for the user: what, where, and how to fix it."""


@dataclass
class ModelConfig:
    """Fields every backbone has. Backbones subclass this with their own knobs."""

    name: str = MISSING  # the conf/model/<name>.yaml that chose it (set by the loader)
    backbone: str = MISSING  # key in the backbone registry
    d_model: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    # Target parameter count; when set, sizing solves d_model (pipeline/models/sizing.py).
    budget_params: Optional[int] = None
    # What budget_params counts: backbone (without embeddings and heads, which depend on the vocabulary)
    # | total (the whole task model)
    budget_scope: str = "backbone"


@dataclass
class SyntheticConfig:
    """Generator parameters of the synthetic tasks (pipeline/data/synthetic.py); real corpora ignore it."""

    seq_len: int = 128  # training length in tokens (MQAR, selcopy: exact; ListOps: lengths in (seq_len/2, seq_len])
    n_train: int = 20000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0
    extrapolate: list[int] = field(default_factory=lambda: [2, 4])  # extra splits test_{k}x at k * seq_len
    vocab: int = 128  # MQAR: keys = first half, values = second half; selcopy: data tokens
    num_pairs: int = 16  # MQAR: key-value pairs, each queried once
    sweep_pairs: list[int] = field(default_factory=list)  # MQAR: extra splits test_{k}pairs at seq_len, k pairs
    train_pairs: list[int] = field(default_factory=list)  # MQAR: train/val sequences mix these pair counts
    train_lengths: list[int] = field(default_factory=list)  # MQAR: train/val sequences mix these lengths
    scale_pairs: bool = False  # MQAR: a sequence of length L holds num_pairs * L // seq_len pairs (test_{k}x, train_lengths)
    filler: str = "blank"  # MQAR: blank | random (tokens of their own, disjoint from keys and values)
    filler_vocab: int = 128  # MQAR, filler=random: how many filler tokens
    query_gap: str = "uniform"  # MQAR: uniform | power_law (gap g after the pairs drawn with weight g^(gap_power-1))
    gap_power: float = 0.01  # MQAR, query_gap=power_law: Zoology's power_a (1 = uniform)
    num_copy: int = 16  # selcopy: data tokens to copy
    max_depth: int = 10  # ListOps: deepest nesting
    max_args: int = 5  # ListOps: most arguments per operator


@dataclass
class TaskConfig:
    name: str = MISSING
    kind: str = MISSING  # a task kind registered in pipeline/tasks/ (lm, classify, recall, translate, ...)
    corpus: str = MISSING  # key in pipeline.data.corpora.CORPORA
    tokenizer: str = "word"  # word | bpe | byte
    vocab_size: int = 10000
    min_frequency: int = 1
    lowercase: bool = False
    max_len: int = 128  # LM: context window; classify: truncation length (tokens)
    val_fraction: float = 0.1  # used only where the corpus has no official split
    test_fraction: float = 0.1
    split_seed: int = 1234
    head: str = "full"  # full | adaptive (adaptive softmax for large LM vocabularies)
    adaptive_cutoffs: list[int] = field(default_factory=lambda: [2000, 6000])
    pooling: str = "mean"  # classify: mean | last | max
    truncate: str = "head"  # classify, documents over max_len: keep the head (first tokens) | tail (last)
    reference: str = ""  # published reference point shown in the report
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # synthetic tasks only


@dataclass
class DataConfig:
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    # Batches are formed from pools of this many batches sorted by length (less padding).
    bucket_pool: int = 50
    max_train_examples: Optional[int] = None  # cap for quick profiles; None = all
    max_eval_examples: Optional[int] = None
    bucket_min: int = 16  # first length bucket is (0, bucket_min]; then powers of two


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1  # int, list of ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp (never ddp_spawn: torchmetrics state is shared on CPU)
    precision: str = "32-true"  # bf16-mixed only on CUDA; it is ~100x slower on CPU
    max_epochs: int = 1
    max_steps: int = -1
    val_check_interval: Optional[float] = None
    limit_val_batches: float = 1.0
    gradient_clip_val: float = 1.0
    log_every_n_steps: int = 20
    enable_progress_bar: bool = True
    deterministic: bool = False
    num_sanity_val_steps: int = 0
    # last.ckpt (the whole training state) every this many steps; a stopped run continues from it
    last_ckpt_every_n_steps: int = 100
    resume: bool = True  # continue an unfinished run of the same config from its last.ckpt


@dataclass
class LoggerConfig:
    mode: str = "auto"  # auto (online when logged in) | online | offline | disabled
    project: str = "seqarena"
    entity: Optional[str] = None
    group: Optional[str] = None  # defaults to the task (<DVC experiment>/<task> inside one): wandb_mode.run_group
    tags: list[str] = field(default_factory=list)


@dataclass
class TuneConfig:
    """Learning-rate search on validation before training (stages/train.py tune_lr): each candidate
    trains from the same seed for the same `max_steps` on every model; the best validation metric's
    lr is the one trained with, and train.json records the search."""

    lrs: list[float] = field(default_factory=list)  # candidate optim.lr values; empty: no search
    max_steps: int = 300  # optimizer steps per candidate


@dataclass
class EvalConfig:
    speed_batch_size: int = 8
    speed_repeats: int = 3
    measure_memory: bool = True
    max_speed_len: Optional[int] = None  # longest length timed; None = the task's max_len
    beam_size: int = 4  # translation decoding: beam search with length normalisation; 1 = greedy
    no_repeat_ngram: int = 4  # translation decoding: a hypothesis may not repeat its own n-grams (0: off)


@dataclass
class BenchConfig:
    """The benchmark stage's length sweep (pipeline/stages/benchmark.py), independent of tasks."""

    min_len: int = 128  # the sweep is n = min_len, 2·min_len, ... up to max_len (powers of two)
    max_len: int = 8192
    # Every cell holds this many tokens (batch = tokens_per_batch // n), so a linear-time model's step
    # costs the same at every n and a quadratic one's grows with n. Must be >= max_len.
    tokens_per_batch: int = 8192
    vocab_size: int = 256  # a fixed small embedding and LM head, so the backbone dominates the cost
    fit_min_len: int = 1024  # complexity exponents are fitted over n >= this (the upper sweep)
    max_mem_gb: float = 8.0  # cells predicted (or found) above this peak are skipped / recorded as oom
    cell_timeout_s: float = 60.0  # a measured call slower than this ends the sweep for longer n
    max_run_time_s: float = 0.5  # torch.utils.benchmark adaptive timing: most seconds per measurement
    decode: bool = True  # time one generated token at each context length (models with `step`)
    decode_max_len: Optional[int] = None  # longest context decoded (one token at a time); None = max_len
    # decode latency is fitted over contexts >= this; None = fit_min_len. One generation yields every
    # context, so a lower start adds fitted points at no cost (a fixed state costs the same at 256 as at 4K)
    decode_fit_min_len: Optional[int] = None
    # longest n whose eager attention (n x n scores materialised) is measured beside the fused kernel's;
    # None = max_len. The eager path is the slow one: 10 s of the Transformer's 8K cell on 2 cores.
    eager_max_len: Optional[int] = None
    threads: int = 0  # intra-op threads; 0 = torch's default


@dataclass
class PathsConfig:
    raw: str = "data/raw"
    tokenized: str = "data/tokenized"
    runs: str = "runs"
    reports: str = "reports"
    bench: str = "results/bench"  # benchmark stage: <bench>/<model>.json
    wandb: str = "."  # W&B writes <wandb>/wandb/offline-run-*
    # Provenance of each run (W&B run id, wall time, host, git revision): git-ignored and no DVC output,
    # so the same inputs give byte-identical tracked outputs and dvc.lock does not change
    logs: str = "logs"


@dataclass
class Config:
    profile: str = "cpu"
    experiment: str = "default"
    seeds: list[int] = field(default_factory=lambda: [0])
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)




def to_dict(cfg: Any) -> dict:
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dataclasses.asdict(cfg)
