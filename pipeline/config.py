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

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pipeline.models import registry  # torch-free: resolves names lazily, imports one model on demand
from pipeline.paths import CONF_DIR, PARAMS, ROOT, relative, run_dir  # noqa: F401  (re-exported)
from pipeline.schema import (BenchConfig, Config, ConfigError, DataConfig, EvalConfig, LoggerConfig,  # noqa: F401
                             ModelConfig, OptimConfig, PathsConfig, SyntheticConfig, TaskConfig, TrainerConfig,
                             to_dict)
from pipeline import kinds

GROUPS = ("profile", "task", "model", "trainer", "logger")

# ----------------------------------------------------------------------------- loading


def choices(group: str) -> list[str]:
    """Names selectable for a group. conf/model/ holds backbones and encoder–decoder models
    (translation only); `choices("model")` lists the backbones, `choices("seq2seq")` the others."""
    if group in ("model", "seq2seq"):
        seq2seq = set(registry.seq2seq_names())
        return [name for name in all_choices("model")
                if (model_backbone(name) in seq2seq) == (group == "seq2seq")]
    return all_choices(group)


def all_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def model_backbone(name: str) -> str:
    """The `model.backbone` that conf/model/<name>.yaml selects."""
    return str(OmegaConf.select(read_yaml(CONF_DIR / "model" / f"{name}.yaml"), "model.backbone"))


def read_yaml(path: Path) -> DictConfig:
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
    path = path or PARAMS
    if not path.exists():
        return OmegaConf.create({})
    if not path.read_text(encoding="utf-8").strip():
        raise ConfigError(f"{path} is empty: it must set at least `profile` (smoke | cpu | paper); write the grid "
                          f"with `python -m pipeline grid models=... tasks=...`")
    return read_yaml(path)


PARAMS_KEYS = ("profile", "experiment", "seeds", "tasks", "runs", "bench")
# A stage's code deps that depend on its model or task: this many fixed slots (pipeline/code_deps.py)
CODE_SLOTS = 12
REWRITE = "rewrite the grid with `python -m pipeline grid models=... tasks=...`"


def _check_code(entry, where: str) -> None:
    code = entry.get("code") if hasattr(entry, "get") else None
    if code is None or len(code) != CODE_SLOTS or not all(isinstance(c, str) for c in code):
        raise ConfigError(f"params.yaml: {where}.code must list {CODE_SLOTS} paths under pipeline/ (the stage's code "
                          f"deps, pipeline/code_deps.py); {REWRITE}")


def run_name(model: str, task: str) -> str:
    return f"{model}-{task}"


def check_params(params: DictConfig) -> None:
    """params.yaml: only known keys, known names, well-formed `runs` and `bench` entries. Whether
    each model can serve its task needs the model code: `grid.check` adds that, and `load()` checks
    the run it builds."""
    unknown = sorted(set(params.keys()) - set(PARAMS_KEYS))
    if unknown:
        hint = " (the models × tasks `grid` became `tasks` + `runs`: python -m pipeline grid models=... tasks=...)" \
            if "grid" in unknown else ""
        raise ConfigError(f"params.yaml: unknown key(s) {', '.join(unknown)}; valid: {', '.join(PARAMS_KEYS)}{hint}")
    if "tasks" in params or "runs" in params:
        check_runs(params)
    check_bench(params)


def check_runs(params) -> dict[str, tuple[str, str]]:
    """`tasks` and `runs` of params.yaml; returns {run key: (model, task)}."""
    tasks, runs = params.get("tasks"), params.get("runs")
    if tasks is None or runs is None or not hasattr(tasks, "keys"):
        raise ConfigError("params.yaml: needs `tasks` (a mapping <task>: {code}) and `runs` (a mapping <model>-<task>: "
                          "{model, task, code}); write them with `python -m pipeline grid models=... tasks=...`")
    valid_tasks, valid_models = choices("task"), all_choices("model")
    for task, entry in tasks.items():
        if task not in valid_tasks:
            raise ConfigError(f"params.yaml: tasks: unknown task '{task}'; choose from: {', '.join(valid_tasks)}")
        _check_code(entry, f"tasks.{task}")
    if not runs:
        raise ConfigError("params.yaml: `runs` is empty, so dvc repro would train nothing; write it with "
                          "`python -m pipeline grid models=... tasks=...`")
    pairs = {}
    for key, run in runs.items():
        where = f"params.yaml: runs.{key}"
        if not hasattr(run, "keys") or set(run.keys()) != {"model", "task", "code"}:
            raise ConfigError(f"{where}: must be {{model: <name>, task: <name>, code: [...]}}, got {run}; {REWRITE}")
        _check_code(run, where)
        model, task = str(run["model"]), str(run["task"])
        if model not in valid_models:
            raise ConfigError(f"{where}: unknown model '{model}'; choose from: {', '.join(valid_models)}")
        if task not in tasks:
            raise ConfigError(f"{where}: task '{task}' is not in params.yaml `tasks` ({', '.join(tasks.keys())}), "
                              f"so nothing downloads or tokenizes it; add it there")
        if key != run_name(model, task):
            raise ConfigError(f"{where}: the key must be '{run_name(model, task)}' (the stage name suffix)")
        pairs[key] = (model, task)
    return pairs


def check_bench(params) -> None:
    """params.yaml `bench`: {<model>: {code: [...]}} of known models that are not encoder-decoders."""
    bench = params.get("bench")
    if bench is None:
        return
    if not hasattr(bench, "keys"):
        raise ConfigError("params.yaml: bench must map model names to {code: [...]}; write it with "
                          "`python -m pipeline grid ... bench=a,b`")
    valid = choices("model")  # backbones only: an encoder-decoder has no single backbone to sweep
    for model, entry in bench.items():
        if model not in valid:
            raise ConfigError(f"params.yaml: bench.{model}: not a backbone model; choose from: {', '.join(valid)}")
        _check_code(entry, f"bench.{model}")


def load(overrides: list[str] | tuple[str, ...] = (), params_path: Path | None = None, *,
         model: bool = True, task_bound: bool = True) -> Config:
    """Compose, validate and return the typed config (an OmegaConf-backed `Config`).

    With `model=True` the model section is checked against its backbone's schema and the model is
    built once on the meta device (no memory), so a setting that only fails at construction is a
    ConfigError here, before any stage starts: built for the task (causal where its kind is), or with
    `task_bound=False` (the benchmark) as the model's own sweep builds it. `model=False` (download,
    tokenize, report) reads no model code: the model section is merged unchecked."""
    cli_groups, cli_node = _parse_overrides(list(overrides))
    defaults = read_yaml(CONF_DIR / "config.yaml")
    params = read_params(params_path)
    check_params(params)

    selected = {g: str(defaults.get("defaults", {}).get(g, "")) for g in GROUPS}
    if "profile" in params:
        selected["profile"] = str(params.profile)
    selected.update(cli_groups)
    files = {g: _group_file(g, selected[g]) for g in GROUPS}

    model_file = read_yaml(files["model"])
    backbone = OmegaConf.select(model_file, "model.backbone")
    if backbone is None:
        raise ConfigError(f"{files['model']}: must set model.backbone (one of: {', '.join(registry.names())})")
    if not model:
        model_schema = ModelConfig
    elif str(backbone) in registry.seq2seq_names():
        model_schema = registry.seq2seq_config_class(str(backbone))
    else:
        model_schema = registry.config_class(str(backbone), source=str(files["model"]))

    cfg = OmegaConf.structured(Config)
    cfg.model = OmegaConf.structured(model_schema)
    OmegaConf.set_struct(cfg, True)
    if not model:
        OmegaConf.set_struct(cfg.model, False)  # any backbone's keys; nothing here reads them

    cfg = _merge(cfg, OmegaConf.masked_copy(defaults, [k for k in defaults if k != "defaults"]), "conf/config.yaml")
    params_part = {k: params[k] for k in ("seeds", "experiment") if k in params}
    cfg = _merge(cfg, params_part, "params.yaml")
    for group in ("task", "model", "trainer", "logger"):
        node = model_file if group == "model" else read_yaml(files[group])
        cfg = _merge(cfg, node, f"conf/{group}/{selected[group]}.yaml")
    profile = read_yaml(files["profile"])
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
    if model:
        check_buildable(cfg, str(files["model"].relative_to(ROOT)), task_bound)
    return cfg  # type: ignore[return-value]


def check_buildable(cfg: Config, source: str, task_bound: bool = True) -> None:
    """Build the sized model on the meta device (no memory, ~0.1 s): a value that the schema
    cannot see as wrong (heads that do not divide the width, an unknown block, a bidirectional
    model on a causal task) becomes a ConfigError naming the model file."""
    import torch

    from pipeline.models import sizing

    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} (profile '{cfg.profile}') but this machine "
                          f"has no CUDA GPU; use profile=cpu or trainer=cpu")
    kind = kinds.get(cfg.task.kind)
    if not task_bound:  # causal where the backbone can be, as pipeline/measure/sweep.py builds it
        causal = cfg.model.backbone not in registry.seq2seq_names() and \
            registry.backbone_class(cfg.model.backbone).causal_capable
    elif cfg.model.backbone in registry.seq2seq_names() and not kind.encoder_decoder:
        serving = [k for k in kinds.names() if kinds.get(k).encoder_decoder]
        raise ConfigError(f"{source}: model '{cfg.model.name}' is an encoder-decoder model: it serves "
                          f"{', '.join(serving)} tasks, not task '{cfg.task.name}' (kind {cfg.task.kind})")
    else:
        causal = kind.causal
    trial = OmegaConf.create(to_dict(cfg.model))
    try:
        with torch.device("meta"):
            sizing.build_sized(trial, causal=causal)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (ValueError, KeyError, TypeError, AssertionError, NotImplementedError, RuntimeError) as e:
        raise ConfigError(f"{source}: model '{cfg.model.name}' cannot be built for task '{cfg.task.name}': "
                          f"{type(e).__name__}: {e}") from None


def _check(cfg: DictConfig) -> None:
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
