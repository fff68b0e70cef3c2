"""Validation of a composed config: every numeric setting against a range generated from the schema,
choices, cross-field consistency and safe names. One ConfigError line names the key, the value and the
valid range; pipeline/config.py calls `check_config` on every load.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import kinds
from pipeline.schema import Config, ConfigError


def check_config(cfg: DictConfig) -> None:
    def one_of(key: str, value: Any, valid: tuple[str, ...]) -> None:
        if value not in valid:
            raise ConfigError(f"{key}='{value}' is not valid; choose one of: {', '.join(valid)}")

    one_of("task.kind", cfg.task.kind, tuple(kinds.names()))
    one_of("task.tokenizer", cfg.task.tokenizer, ("word", "bpe", "byte", "none"))  # none: synthetic
    one_of("task.head", cfg.task.head, ("full", "adaptive"))
    one_of("task.pooling", cfg.task.pooling, ("mean", "last", "max"))
    one_of("model.budget_scope", cfg.model.budget_scope, ("backbone", "total"))
    if any(not lr > 0 for lr in cfg.tune.lrs) or cfg.tune.max_steps < 1:
        raise ConfigError(f"tune.lrs={list(cfg.tune.lrs)}, tune.max_steps={cfg.tune.max_steps}: learning rates must be "
                          "> 0 and max_steps >= 1 (tune.lrs=[] turns the search off)")
    one_of("task.truncate", cfg.task.truncate, ("head", "tail"))
    one_of("task.synthetic.filler", cfg.task.synthetic.filler, ("blank", "random"))
    one_of("task.synthetic.query_gap", cfg.task.synthetic.query_gap, ("uniform", "power_law"))
    one_of("optim.schedule", cfg.optim.schedule, ("cosine", "constant"))
    one_of("logger.mode", cfg.logger.mode, ("auto", "online", "offline", "disabled"))
    if cfg.trainer.strategy == "ddp_spawn":
        raise ConfigError("trainer.strategy=ddp_spawn is not supported (torchmetrics state is shared between "
                          "CPU workers and double-counted); use trainer.strategy=ddp")
    if cfg.trainer.accelerator == "cpu" and "16" in cfg.trainer.precision:
        raise ConfigError(f"trainer.precision={cfg.trainer.precision} on CPU is ~100x slower than fp32; use 32-true")
    for key in ("task.max_len", "data.batch_size", "data.eval_batch_size", "model.d_model", "model.n_layers"):
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {OmegaConf.select(cfg, key)}")
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    _check_training(cfg)
    _check_bench(cfg.bench)
    _check_ranges(cfg)
    _check_cross_fields(cfg)


def _check_training(cfg: DictConfig) -> None:
    """Values that would otherwise train silently wrong (a negative slice, sizing skipped) or crash deep."""
    def positive_or_null(key: str) -> None:
        value = OmegaConf.select(cfg, key)
        if value is not None and not value > 0:
            raise ConfigError(f"{key}={value} must be a positive number or null ({'no budget: d_model as set' if 'budget' in key else 'all'})")

    for key in ("model.budget_params", "data.max_train_examples", "data.max_eval_examples"):
        positive_or_null(key)
    if not list(cfg.seeds):
        raise ConfigError("seeds=[] trains nothing; give at least one seed, e.g. seeds=[0]")
    o, t = cfg.optim, cfg.trainer
    if not (math.isfinite(o.lr) and o.lr > 0):
        raise ConfigError(f"optim.lr={o.lr} must be a positive finite number")
    for key, value in (("optim.warmup_steps", o.warmup_steps), ("optim.weight_decay", o.weight_decay),
                       ("trainer.gradient_clip_val", t.gradient_clip_val)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key}={value} must be >= 0")
    for key, value in (("optim.beta1", o.beta1), ("optim.beta2", o.beta2)):
        if not 0 <= value < 1:
            raise ConfigError(f"{key}={value} must be in [0, 1)")
    if not (t.max_epochs >= 1 or (t.max_epochs == -1 and t.max_steps > 0)):
        raise ConfigError(f"trainer.max_epochs={t.max_epochs}: must be >= 1 (or -1 with trainer.max_steps > 0)")
    if t.max_steps == 0 or t.max_steps < -1:
        raise ConfigError(f"trainer.max_steps={t.max_steps}: must be -1 (no limit) or positive")
    devices = t.devices
    if isinstance(devices, str) and devices != "auto" and not devices.isdigit():
        raise ConfigError(f"trainer.devices={devices!r}: give a number, a list of device ids or 'auto'")
    count = int(devices) if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()) else None
    if count is not None and count < 1:
        raise ConfigError(f"trainer.devices={devices}: must be at least 1")
    if t.accelerator == "cpu" and count is not None and count > (os.cpu_count() or 1):
        raise ConfigError(f"trainer.devices={count} CPU processes on a machine with {os.cpu_count()} cores: each "
                          f"process trains a full copy; use at most {os.cpu_count()} (or trainer=gpu / ddp on GPUs)")


def _check_bench(b) -> None:
    for key in ("min_len", "max_len", "tokens_per_batch", "vocab_size", "fit_min_len"):
        if getattr(b, key) <= 0:
            raise ConfigError(f"bench.{key} must be positive, got {getattr(b, key)}")
    for key in ("max_mem_gb", "cell_timeout_s", "max_run_time_s"):
        if not getattr(b, key) > 0:
            raise ConfigError(f"bench.{key} must be positive, got {getattr(b, key)}")
    if b.min_len & (b.min_len - 1) or b.max_len & (b.max_len - 1):
        raise ConfigError(f"bench.min_len={b.min_len} and bench.max_len={b.max_len} must be powers of two")
    if b.min_len > b.max_len:
        raise ConfigError(f"bench.min_len={b.min_len} is above bench.max_len={b.max_len}")
    if b.tokens_per_batch < b.max_len:
        raise ConfigError(f"bench.tokens_per_batch={b.tokens_per_batch} is below bench.max_len={b.max_len}: "
                          f"every cell must hold the same number of tokens; raise it to at least {b.max_len}")



# ----------------------------------------------------------------------------- ranges (generated from the schema)

NAME_ALPHABET = re.compile(r"[a-z0-9-]+")


@dataclasses.dataclass(frozen=True)
class Range:
    """Valid values of one numeric setting: [lo, hi] (open ends where lo_open / hi_open), plus `also`
    (sentinels such as -1 = no limit). Optional fields also accept null."""

    lo: float = 1
    hi: float = 10**9
    lo_open: bool = False
    hi_open: bool = False
    also: tuple = ()
    note: str = ""
    whole_to: float = 0  # > 0: whole numbers in [1, whole_to] are valid too (Lightning reads 10.0 as 10 steps)

    def ok(self, value) -> bool:
        if value in self.also:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.whole_to and value % 1 == 0 and 1 <= value <= self.whole_to:
            return True
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self, is_int: bool) -> str:
        hi = "inf" if self.hi == math.inf else f"{self.hi:g}" if not is_int or self.hi < 10**6 else f"{int(self.hi):_}"
        text = f"{'an integer' if is_int else 'a number'} in {'(' if self.lo_open else '['}{self.lo:g}, {hi}" \
               f"{')' if self.hi_open or self.hi == math.inf else ']'}"
        if self.also:
            text += f" or {', '.join(str(a) for a in self.also)}"
        if self.whole_to:
            text += f" or a whole number in [1, {int(self.whole_to):_}]"
        return text + (f" ({self.note})" if self.note else "")


INT_DEFAULT = Range(1, 10**9)  # every int setting unless RANGES says otherwise: a count >= 1, sanely capped
FLOAT_DEFAULT = Range(0, math.inf, lo_open=True)  # every float: positive and finite
SEED = Range(0, 2**32 - 1, note="numpy seeds are 32-bit")
FRACTION = Range(0, 1, lo_open=True)  # (0, 1]
UNIT = Range(0, 1, hi_open=True)  # [0, 1)
LENGTH = Range(1, 2**20, note="tokens")
NONNEG = Range(0, 10**9)
# Exceptions to the type's default, per dotted key. Keys must exist in the schema (tests/test_config.py).
RANGES: dict[str, Range] = {
    "model.d_model": Range(1, 65536, note="wider models do not fit in memory; set model.budget_params to size it"),
    "model.n_layers": Range(1, 1024),
    "model.dropout": UNIT,
    "model.budget_params": Range(1, 10**10, note="parameters"),
    "task.vocab_size": Range(1, 10**7),
    "task.max_len": LENGTH,
    "task.val_fraction": Range(0, 1, lo_open=True, hi_open=True),
    "task.test_fraction": Range(0, 1, lo_open=True, hi_open=True),
    "task.split_seed": SEED,
    "task.synthetic.seq_len": LENGTH,
    "task.synthetic.n_train": Range(1, 10**8, note="generated examples"),
    "task.synthetic.n_val": Range(1, 10**8, note="generated examples"),
    "task.synthetic.n_test": Range(1, 10**8, note="generated examples"),
    "task.synthetic.seed": SEED,
    "task.synthetic.vocab": Range(2, 10**7),
    "task.synthetic.num_pairs": Range(1, 10**6),
    "task.synthetic.num_copy": Range(1, 10**6),
    "task.synthetic.max_depth": Range(1, 100, note="ListOps trees are generated recursively"),
    "task.synthetic.max_args": Range(2, 1000),
    "task.synthetic.filler_vocab": Range(1, 10**7),
    "task.synthetic.gap_power": Range(0, 1, lo_open=True, note="Zoology's power_a; 1 = uniform gaps"),
    "data.batch_size": Range(1, 2**20),
    "data.eval_batch_size": Range(1, 2**20),
    "data.num_workers": Range(0, 256, note="DataLoader processes; 0 = load in the main process"),
    "data.bucket_pool": Range(1, 10**6),
    "data.bucket_min": LENGTH,
    "optim.lr": FLOAT_DEFAULT,
    "optim.weight_decay": Range(0, 1000),
    "optim.beta1": UNIT,
    "optim.beta2": UNIT,
    "optim.warmup_steps": NONNEG,
    "trainer.num_nodes": Range(1, 4096),
    "trainer.max_epochs": Range(1, 10**6, also=(-1,), note="-1 with trainer.max_steps > 0"),
    "trainer.max_steps": Range(1, 10**9, also=(-1,), note="-1 = no limit"),
    "trainer.val_check_interval": Range(0, 1, lo_open=True, whole_to=10**9,
                                        note="a fraction of the epoch or a number of steps; null = once per epoch"),
    "trainer.limit_val_batches": Range(0, 1, lo_open=True, whole_to=10**9,
                                       note="a fraction of the validation batches or a number of batches"),
    "trainer.gradient_clip_val": Range(0, math.inf, note="0 = no clipping"),
    "trainer.num_sanity_val_steps": Range(0, 10**6, also=(-1,), note="-1 = all validation batches"),
    "tune.max_steps": Range(1, 10**7),
    "eval.speed_batch_size": Range(1, 2**16),
    "eval.speed_repeats": Range(1, 1000),
    "eval.max_speed_len": LENGTH,
    "eval.beam_size": Range(1, 1024),
    "eval.no_repeat_ngram": Range(0, 1024, note="0 = off"),
    "bench.min_len": Range(1, 2**24),
    "bench.max_len": Range(1, 2**24),
    "bench.tokens_per_batch": Range(1, 2**30),
    "bench.vocab_size": Range(1, 10**7),
    "bench.fit_min_len": Range(1, 2**24),
    "bench.max_run_time_s": Range(0, 3600, lo_open=True, note="seconds per measurement"),
    "bench.decode_max_len": Range(1, 2**24),
    "bench.decode_fit_min_len": Range(1, 2**24),
    "bench.eager_max_len": Range(1, 2**24),
    "bench.threads": Range(0, 4096, note="0 = torch's default"),
}


def numeric_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, type, bool]]:
    """(dotted key, int | float, optional) of every int / float / Optional[int] / Optional[float] field of the
    schema, nested dataclasses included (the model section: the fields every backbone has)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = typing.get_origin(tp) is typing.Union and len(args) == 1
        base = args[0] if optional else tp
        if dataclasses.is_dataclass(base):
            out += numeric_fields(base, key + ".")
        elif base in (int, float):
            out.append((key, base, optional))
    return out


def range_of(key: str, kind: type) -> Range:
    return RANGES.get(key) or (INT_DEFAULT if kind is int else FLOAT_DEFAULT)


def _check_ranges(cfg: DictConfig) -> None:
    """Every numeric setting of the schema against its Range: one line naming the key, the value, the valid range."""
    for key, kind, optional in numeric_fields():
        value = OmegaConf.select(cfg, key)
        if value is None and optional:
            continue
        rng = range_of(key, kind)
        if value is None or isinstance(value, bool) or not rng.ok(value):
            raise ConfigError(f"{key}={value} is out of range: must be {rng.describe(kind is int)}"
                              f"{' or null' if optional else ''}")
    for key in ("seeds", "task.adaptive_cutoffs", "task.synthetic.extrapolate", "task.synthetic.sweep_pairs",
                "task.synthetic.train_pairs", "task.synthetic.train_lengths"):
        rng = SEED if key == "seeds" else INT_DEFAULT
        for value in OmegaConf.select(cfg, key):
            if isinstance(value, bool) or not isinstance(value, int) or not rng.ok(value):
                raise ConfigError(f"{key}={list(OmegaConf.select(cfg, key))}: {value} is out of range: every entry "
                                  f"must be {rng.describe(True)}")


def _check_cross_fields(cfg: DictConfig) -> None:
    t, d = cfg.task, cfg.data
    seeds = list(cfg.seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: duplicate seeds (a repeated seed trains the same run twice and "
                          f"gives a zero-width interval); give distinct seeds")
    longest_train = max([int(n) for n in t.synthetic.train_lengths], default=0)
    if t.tokenizer == "none" and longest_train > t.max_len:
        raise ConfigError(f"task.synthetic.train_lengths={list(t.synthetic.train_lengths)} is longer than "
                          f"task.max_len={t.max_len}, which would cut the training sequences; set task.max_len to "
                          f"at least {longest_train}")
    if t.max_len < d.bucket_min:
        raise ConfigError(f"task.max_len={t.max_len} is below data.bucket_min={d.bucket_min} (the first length "
                          f"bucket); lower data.bucket_min to at most {t.max_len}")
    cutoffs = list(t.adaptive_cutoffs)
    if t.head == "adaptive":
        if not cutoffs or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])) or cutoffs[-1] >= t.vocab_size:
            raise ConfigError(f"task.adaptive_cutoffs={cutoffs}: must be strictly increasing and below "
                              f"task.vocab_size={t.vocab_size}")
    if t.val_fraction + t.test_fraction >= 1:
        raise ConfigError(f"task.val_fraction={t.val_fraction} + task.test_fraction={t.test_fraction} must be "
                          f"below 1 (the rest trains)")
