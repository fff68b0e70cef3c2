"""Typed configuration: the only module that reads conf/ and params.yaml.

A run's config is composed in this order, the more specific later (later wins):

    schema defaults  <  conf/config.yaml  <  params.yaml seeds, experiment
      <  conf/task/<task>.yaml  <  conf/model/<model>.yaml  <  conf/trainer/<t>.yaml  <  conf/logger/<l>.yaml
      <  conf/profile/<p>.yaml: its common part  <  its tasks.<task>  <  its models.<model>
      <  params.yaml's settings (task, model, data, optim, trainer: this experiment, every run of the grid)
      <  command-line key=value overrides

`python -m pipeline config model=... task=...` prints each value with the file that set it.

Every group file is a partial config merged at the root (so a model file may also set `optim.lr`).
The model section's schema is the dataclass its backbone registered with, so a key that the chosen
backbone does not know is an error, not silently ignored.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pipeline.models import registry  # torch-free: resolves names lazily, imports one model on demand
from pipeline.paths import CONF_DIR, PARAMS, ROOT, relative, run_dir  # noqa: F401  (re-exported)
from pipeline.schema import (BenchConfig, Config, ConfigError, DataConfig, EvalConfig, LoggerConfig,  # noqa: F401
                             ModelConfig, OptimConfig, PathsConfig, SyntheticConfig, TaskConfig, TrainerConfig,
                             to_dict)
from pipeline.config_checks import NAME_ALPHABET, RANGES, check_config, numeric_fields  # noqa: F401  (re-exported)

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


def check_name(group: str, name: str) -> None:
    """A group choice names a file in conf/<group>/ and a folder under runs/: `model=../model/lstm` must not
    reach another folder."""
    if not NAME_ALPHABET.fullmatch(name):
        raise ConfigError(f"{group}={name!r} is not a valid name: use lowercase letters, digits and '-' "
                          f"(one of: {', '.join(all_choices(group))})")


def _group_file(group: str, name: str) -> Path:
    check_name(group, name)
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


GRID_KEYS = ("profile", "experiment", "seeds", "tasks", "runs", "bench")
# params.yaml sections that set values over conf/ for every run of the grid (`dvc exp run -S optim.lr=...`)
SETTING_SECTIONS = ("task", "model", "data", "optim", "trainer")
PARAMS_KEYS = GRID_KEYS + SETTING_SECTIONS
REWRITE = "rewrite the grid with `python -m pipeline grid models=... tasks=...`"


def run_name(model: str, task: str) -> str:
    return f"{model}-{task}"


def check_params(params: DictConfig) -> None:
    """params.yaml: only known keys, known names, well-formed `runs` and `bench` entries. Whether
    each model can serve its task needs the model code: `grid.check` adds that, and `load()` checks
    the run it builds."""
    unknown = sorted(set(params.keys()) - set(PARAMS_KEYS))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key(s) {', '.join(unknown)}; valid: {', '.join(PARAMS_KEYS)} "
                          f"(any other setting goes under one of {', '.join(SETTING_SECTIONS)}, e.g. optim.lr)")
    for section in SETTING_SECTIONS:
        if params.get(section) is not None and not isinstance(params.get(section), DictConfig):
            raise ConfigError(f"params.yaml: `{section}` must be a mapping of settings (e.g. {section}: {{...}}), "
                              f"got {params.get(section)!r}")
    if "tasks" in params or "runs" in params:
        check_runs(params)
    check_bench(params)


def _names_list(value, where: str, valid: list[str]) -> list[str]:
    if not isinstance(value, (list, tuple)) and not OmegaConf.is_list(value):
        raise ConfigError(f"params.yaml: {where} must be a list of names, e.g. {where}: [{valid[0]}]; {REWRITE}")
    names = [str(v) for v in value]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"params.yaml: {where}: unknown {', '.join(unknown)}; choose from: {', '.join(valid)}")
    return names


def check_runs(params) -> dict[str, tuple[str, str]]:
    """`tasks` (a list) and `runs` ({<model>-<task>: {model, task}}) of params.yaml; returns {run: (model, task)}."""
    tasks, runs = params.get("tasks"), params.get("runs")
    if tasks is None or runs is None:
        raise ConfigError("params.yaml: needs `tasks` (a list of task names) and `runs` (a mapping <model>-<task>: "
                          "{model, task}); write them with `python -m pipeline grid models=... tasks=...`")
    tasks = _names_list(tasks, "tasks", choices("task"))
    if not hasattr(runs, "items") or not runs:
        raise ConfigError("params.yaml: `runs` is empty or not a mapping, so dvc repro would train nothing; write it "
                          "with `python -m pipeline grid models=... tasks=...`")
    valid_models = all_choices("model")
    pairs = {}
    for key, run in runs.items():
        where = f"params.yaml: runs.{key}"
        if not hasattr(run, "keys") or set(run.keys()) != {"model", "task"}:
            raise ConfigError(f"{where}: must be {{model: <name>, task: <name>}}, got {run}; {REWRITE}")
        model, task = str(run["model"]), str(run["task"])
        if model not in valid_models:
            raise ConfigError(f"{where}: unknown model '{model}'; choose from: {', '.join(valid_models)}")
        if task not in tasks:
            raise ConfigError(f"{where}: task '{task}' is not in params.yaml `tasks` ({', '.join(tasks)}), "
                              f"so nothing downloads or tokenizes it; add it there")
        if key != run_name(model, task):
            raise ConfigError(f"{where}: the key must be '{run_name(model, task)}' (the stage name suffix)")
        pairs[str(key)] = (model, task)
    return pairs


def check_bench(params) -> list[str] | None:
    """params.yaml `bench`: a list of backbone models (an encoder-decoder has no single backbone to sweep)."""
    bench = params.get("bench")
    return None if bench is None else _names_list(bench, "bench", choices("model"))


def experiment_settings(params: DictConfig) -> dict:
    """params.yaml's setting sections without their null leaves (null: keep conf/'s value)."""
    def drop_nulls(node):
        if isinstance(node, dict):
            kept = {k: drop_nulls(v) for k, v in node.items() if v is not None}
            return {k: v for k, v in kept.items() if v != {}}
        return node

    plain = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else dict(params)
    return drop_nulls({k: plain[k] for k in SETTING_SECTIONS if plain.get(k)})


def _leaves(node, prefix: str = "") -> list[str]:
    """Dotted keys of a config's leaves (a list is a leaf)."""
    if not isinstance(node, DictConfig):
        return [prefix]
    return [leaf for k, v in node.items_ex(resolve=False) for leaf in _leaves(v, f"{prefix}.{k}" if prefix else str(k))]


def load(overrides: list[str] | tuple[str, ...] = (), params_path: Path | None = None, *,
         model: bool = True, task_bound: bool = True, sources: dict[str, str] | None = None) -> Config:
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

    layers = [(OmegaConf.masked_copy(defaults, [k for k in defaults if k != "defaults"]), "conf/config.yaml"),
              ({k: params[k] for k in ("seeds", "experiment") if k in params}, "params.yaml")]
    for group in ("task", "model", "trainer", "logger"):
        node = model_file if group == "model" else read_yaml(files[group])
        layers.append((node, f"conf/{group}/{selected[group]}.yaml"))
    profile_file = f"conf/profile/{selected['profile']}.yaml"
    profile = read_yaml(files["profile"])
    per_task = profile.pop("tasks", None) or {}
    per_model = profile.pop("models", None) or {}
    layers.append((profile, profile_file))
    if selected["task"] in per_task:
        layers.append((per_task[selected["task"]], f"{profile_file} tasks.{selected['task']}"))
    if selected["model"] in per_model:
        layers.append((per_model[selected["model"]], f"{profile_file} models.{selected['model']}"))
    layers.append((experiment_settings(params), "params.yaml"))
    layers.append((cli_node, "command line"))
    for node, source in layers:
        cfg = _merge(cfg, node, source)
        if sources is not None:
            sources.update(dict.fromkeys(_leaves(OmegaConf.create(node)), source))

    cfg.profile = selected["profile"]
    cfg.model.name = selected["model"]
    if cfg.task.name != selected["task"]:
        raise ConfigError(f"conf/task/{selected['task']}.yaml: task.name is '{cfg.task.name}', expected '{selected['task']}'")
    check_config(cfg)
    if model:
        # By name: download / tokenize / report (model=False) never run model code, so their DVC code deps
        # leave it out; the model stages list pipeline/models/sizing.py themselves (pipeline/code_deps.py).
        importlib.import_module("pipeline.models.sizing").check_buildable(
            cfg, str(files["model"].relative_to(ROOT)), task_bound)
    return cfg  # type: ignore[return-value]
