"""Typed configuration: the only module that reads conf/ and params.yaml.

A run's config is composed in this order (later wins):

    schema defaults  <  conf/config.yaml  <  params.yaml (what DVC tracks)
      <  conf/task/<task>.yaml  <  conf/model/<model>.yaml  <  conf/trainer/<t>.yaml
      <  conf/logger/<l>.yaml  <  conf/profile/<p>.yaml (common part, then its tasks.<task> part)
      <  command-line key=value overrides

Every group file is a partial config merged at the root (so a model file may also set `optim.lr`).
The model section's schema is the dataclass its backbone registered with, so a key that the chosen
backbone does not know is an error, not silently ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
GROUPS = ("profile", "task", "model", "trainer", "logger")


class ConfigError(ValueError):
    """A configuration problem, worded for the user: what, where, and how to fix it."""


# ----------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    """Fields every backbone has. Backbones subclass this with their own knobs."""

    name: str = MISSING  # the conf/model/<name>.yaml that chose it (set by the loader)
    backbone: str = MISSING  # key in the backbone registry
    d_model: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    # Target count of backbone (non-embedding) parameters; when set, sizing solves d_model.
    budget_params: Optional[int] = None


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
    num_copy: int = 16  # selcopy: data tokens to copy
    max_depth: int = 10  # ListOps: deepest nesting
    max_args: int = 5  # ListOps: most arguments per operator


@dataclass
class TaskConfig:
    name: str = MISSING
    kind: str = MISSING  # lm | classify
    corpus: str = MISSING  # key in pipeline.data.sources.CORPORA
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


@dataclass
class LoggerConfig:
    mode: str = "auto"  # auto (online when logged in) | online | offline | disabled
    project: str = "seqarena"
    entity: Optional[str] = None
    group: Optional[str] = None  # defaults to the experiment name
    tags: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    speed_batch_size: int = 8
    speed_repeats: int = 3
    measure_memory: bool = True
    max_speed_len: Optional[int] = None  # longest length timed; None = the task's max_len
    beam_size: int = 1  # translation decoding: 1 = greedy


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


@dataclass
class Config:
    profile: str = "cpu"
    experiment: str = "default"
    seeds: list[int] = field(default_factory=lambda: [0])
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


TASK_KINDS = ("lm", "classify", "translate", "recall")

# ----------------------------------------------------------------------------- loading


def choices(group: str) -> list[str]:
    """Names selectable for a group. conf/model/ holds backbones and encoder–decoder models
    (translation only); `choices("model")` lists the backbones, `choices("seq2seq")` the others."""
    if group in ("model", "seq2seq"):
        from pipeline.models import registry

        seq2seq = set(registry.seq2seq_names())
        return [name for name in all_choices("model")
                if (_model_backbone(name) in seq2seq) == (group == "seq2seq")]
    return all_choices(group)


def all_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _model_backbone(name: str) -> str:
    return str(OmegaConf.select(_read_yaml(CONF_DIR / "model" / f"{name}.yaml"), "model.backbone"))


def _read_yaml(path: Path) -> DictConfig:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml syntax errors
        raise ConfigError(f"{path}: cannot parse YAML: {e}") from e
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return node


def _group_file(group: str, name: str) -> Path:
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown {group} '{name}': no conf/{group}/{name}.yaml; "
                          f"choose one of: {', '.join(all_choices(group))}")
    return path


def _merge(base: DictConfig, node: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, node)
    except ConfigKeyError as e:
        raise ConfigError(f"{source}: unknown key '{e.full_key}'. {_valid_keys(base, e.full_key)}") from e
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise ConfigError(f"{source}: invalid value for '{key}': {str(e).splitlines()[0]}") from e


def _valid_keys(base: DictConfig, full_key: str) -> str:
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    node = OmegaConf.select(base, parent) if parent else base
    if isinstance(node, DictConfig):
        where = f"'{parent}'" if parent else "the top level"
        return f"Valid keys in {where}: {', '.join(sorted(str(k) for k in node.keys()))}"
    return ""


def _parse_overrides(overrides: list[str]) -> tuple[dict[str, str], DictConfig]:
    """Split `key=value` arguments into group choices and dotted overrides."""
    groups: dict[str, str] = {}
    dotted = []
    for arg in overrides:
        if "=" not in arg:
            raise ConfigError(f"command line: '{arg}' is not key=value (e.g. model=lstm trainer.max_epochs=1)")
        key, value = arg.split("=", 1)
        if key in GROUPS:
            groups[key] = value
        else:
            dotted.append(arg)
    try:
        node = OmegaConf.from_dotlist(dotted)
    except OmegaConfBaseException as e:
        raise ConfigError(f"command line: cannot parse overrides {dotted}: {e}") from e
    return groups, node


def read_params(path: Path | None = None) -> DictConfig:
    path = path or ROOT / "params.yaml"
    return _read_yaml(path) if path.exists() else OmegaConf.create({})


PARAMS_KEYS = ("profile", "experiment", "seeds", "tasks", "runs", "bench")


def check_params(params: DictConfig) -> None:
    """params.yaml: only known keys, and a grid whose every run can be served (pipeline/grid.py)."""
    from pipeline import grid

    unknown = sorted(set(params.keys()) - set(PARAMS_KEYS))
    if unknown:
        hint = " (the models × tasks `grid` became `tasks` + `runs`: python -m pipeline grid models=... tasks=...)" \
            if "grid" in unknown else ""
        raise ConfigError(f"params.yaml: unknown key(s) {', '.join(unknown)}; valid: {', '.join(PARAMS_KEYS)}{hint}")
    if "tasks" in params or "runs" in params:
        grid.check(params)
    grid.check_bench(params)


def load(overrides: list[str] | tuple[str, ...] = (), params_path: Path | None = None) -> Config:
    """Compose, validate and return the typed config (an OmegaConf-backed `Config`)."""
    from pipeline.models import registry  # populates the backbone registry

    cli_groups, cli_node = _parse_overrides(list(overrides))
    defaults = _read_yaml(CONF_DIR / "config.yaml")
    params = read_params(params_path)
    check_params(params)

    selected = {g: str(defaults.get("defaults", {}).get(g, "")) for g in GROUPS}
    if "profile" in params:
        selected["profile"] = str(params.profile)
    selected.update(cli_groups)
    files = {g: _group_file(g, selected[g]) for g in GROUPS}

    model_file = _read_yaml(files["model"])
    backbone = OmegaConf.select(model_file, "model.backbone")
    if backbone is None:
        raise ConfigError(f"{files['model']}: must set model.backbone (one of: {', '.join(registry.names())})")
    if str(backbone) in registry.seq2seq_names():
        model_schema = registry.seq2seq_config_class(str(backbone))
    else:
        model_schema = registry.config_class(str(backbone), source=str(files["model"]))

    cfg = OmegaConf.structured(Config)
    cfg.model = OmegaConf.structured(model_schema)
    OmegaConf.set_struct(cfg, True)

    cfg = _merge(cfg, OmegaConf.masked_copy(defaults, [k for k in defaults if k != "defaults"]), "conf/config.yaml")
    params_part = {k: params[k] for k in ("seeds", "experiment") if k in params}
    cfg = _merge(cfg, params_part, "params.yaml")
    for group in ("task", "model", "trainer", "logger"):
        node = model_file if group == "model" else _read_yaml(files[group])
        cfg = _merge(cfg, node, f"conf/{group}/{selected[group]}.yaml")
    profile = _read_yaml(files["profile"])
    per_task = profile.pop("tasks", None) or {}
    per_model = profile.pop("models", None) or {}
    cfg = _merge(cfg, profile, f"conf/profile/{selected['profile']}.yaml")
    if selected["task"] in per_task:
        cfg = _merge(cfg, per_task[selected["task"]], f"conf/profile/{selected['profile']}.yaml (tasks.{selected['task']})")
    if selected["model"] in per_model:
        cfg = _merge(cfg, per_model[selected["model"]], f"conf/profile/{selected['profile']}.yaml (models.{selected['model']})")
    cfg = _merge(cfg, cli_node, "command line")

    cfg.profile = selected["profile"]
    cfg.model.name = selected["model"]
    if cfg.task.name != selected["task"]:
        raise ConfigError(f"conf/task/{selected['task']}.yaml: task.name is '{cfg.task.name}', expected '{selected['task']}'")
    _check(cfg)
    return cfg  # type: ignore[return-value]


def _check(cfg: DictConfig) -> None:
    def one_of(key: str, value: Any, valid: tuple[str, ...]) -> None:
        if value not in valid:
            raise ConfigError(f"{key}='{value}' is not valid; choose one of: {', '.join(valid)}")

    one_of("task.kind", cfg.task.kind, TASK_KINDS)
    one_of("task.tokenizer", cfg.task.tokenizer, ("word", "bpe", "byte", "none"))  # none: synthetic
    one_of("task.head", cfg.task.head, ("full", "adaptive"))
    one_of("task.pooling", cfg.task.pooling, ("mean", "last", "max"))
    one_of("task.truncate", cfg.task.truncate, ("head", "tail"))
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
    _check_bench(cfg.bench)


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


def to_dict(cfg: Any) -> dict:
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dataclasses.asdict(cfg)


def relative(path: str | Path) -> str:
    """Path relative to the project root where it lies inside it (results stay portable)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run_dir(cfg: Config) -> Path:
    return ROOT / cfg.paths.runs / cfg.task.name / cfg.model.name
