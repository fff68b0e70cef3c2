"""Config composition and validation: bad input fails at once, naming the key and the valid choices."""
import re

import pytest

from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, ROOT, ConfigError, choices, load
from pipeline.models import registry


def test_defaults_compose_with_profile_and_task_overrides():
    cfg = load(["model=transformer", "task=ptb", "profile=cpu"])
    assert cfg.model.name == "transformer" and cfg.model.backbone == "stack"
    assert cfg.model.budget_params == 500000  # from the profile
    assert cfg.task.max_len == 64  # the profile's tasks.ptb section wins over conf/task/ptb.yaml
    assert cfg.optim.lr == OmegaConf.load(CONF_DIR / "model" / "transformer.yaml").optim.lr  # the model file's


def test_command_line_wins_and_is_typed():
    cfg = load(["model=lstm", "task=rt", "trainer.max_epochs=7", "optim.lr=0.5"])
    assert cfg.trainer.max_epochs == 7 and isinstance(cfg.trainer.max_epochs, int)
    assert cfg.optim.lr == 0.5


@pytest.mark.parametrize("args, needle", [
    (["model=lstmm"], "unknown model 'lstmm'"),
    (["task=imdbx"], "unknown task 'imdbx'"),
    (["profile=huge"], "unknown profile 'huge'"),
    (["trainer.max_epoch=3"], "unknown key 'trainer.max_epoch'"),
    (["model=lstm", "model.n_heads=4"], "unknown key 'model.n_heads'"),  # LSTM has no heads
    (["trainer.max_epochs=abc"], "trainer.max_epochs"),
    (["task.kind=regression"], "task.kind='regression'"),
    (["trainer.strategy=ddp_spawn"], "ddp_spawn"),
    (["model.dropout=1.5"], "model.dropout"),
    (["novalue"], "not key=value"),
])
def test_bad_input_names_the_problem(args, needle):
    with pytest.raises(ConfigError) as err:
        load(args)
    assert needle in str(err.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load(["trainer.max_epoch=3"])
    assert "max_epochs" in str(err.value)  # the fix is in the message


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError) as err:
        load(["model=nope"])
    for name in choices("model"):
        assert name in str(err.value)


def test_every_model_file_names_a_registered_backbone_and_loads():
    for name in choices("model"):
        cfg = load([f"model={name}"], task_bound=False)  # the model alone, as the benchmark builds it
        assert cfg.model.backbone in registry.names()


def test_every_registered_backbone_has_a_model_file():
    used = {load([f"model={name}"], task_bound=False).model.backbone for name in choices("model")}
    assert set(registry.names()) <= used, f"backbones without conf/model/*.yaml: {set(registry.names()) - used}"


def test_every_block_is_used_by_some_model_file():
    used = set()
    for name in choices("model"):
        used |= set(load([f"model={name}"], task_bound=False).model.get("layers", []) or [])
    assert set(registry.block_names()) <= used, f"blocks no model uses: {set(registry.block_names()) - used}"


def test_params_yaml_grid_is_valid():
    from pipeline import grid
    from pipeline.config import read_params

    params = read_params()
    grid.check(params)  # raises on any bad entry
    assert params.runs, "params.yaml runs nothing"
    assert {r.task for r in params.runs.values()} == set(params.tasks)


def write_params(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("tasks: [ptb]\nruns: {lstm-rt: {model: lstm, task: rt}}\n", "task 'rt' is not in params.yaml `tasks`"),
    ("tasks: [ptb]\nruns: {lstm-ptb: {model: lsmt, task: ptb}}\n", "unknown model 'lsmt'"),
    ("tasks: [ptb]\nruns: {a: {model: lstm, task: ptb}}\n", "the key must be 'lstm-ptb'"),
    ("tasks: [pbt]\nruns: {}\n", "tasks: unknown pbt"),
    ("tasks: {ptb: {}}\nruns: {}\n", "tasks must be a list of names"),
    ("tasks: [ptb]\nruns: {lstm-ptb: {model: lstm, task: ptb, code: [a.py]}}\n", "python -m pipeline grid"),
    ("tasks: [ptb]\nruns: {lstm-ptb: {model: lstm, task: ptb}}\nbench: {lstm: {}}\n", "bench must be a list"),
    ("grid: {models: [lstm], tasks: [ptb]}\n", "unknown key(s) grid"),
    ("optim: 0.1\n", "`optim` must be a mapping"),
])
def test_bad_params_yaml_names_the_entry_and_the_fix(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load([], params_path=write_params(tmp_path, text))


@pytest.mark.parametrize("model, task, message", [
    ("kim-cnn", "ptb", "kim-cnn cannot run causally"),
    ("rnn-attention", "ptb", "rnn-attention is an encoder–decoder model: it cannot serve lm tasks"),
])
def test_a_run_its_model_cannot_serve_is_refused(tmp_path, model, task, message):
    """By `grid` (which checks every run, importing each model) and by the run's own stages, whose
    load() builds that one model on the meta device; other stages never import its code."""
    from pipeline import grid
    from pipeline.config import read_params

    path = write_params(tmp_path, f"tasks: [{task}]\nruns: {{{model}-{task}: {{model: {model}, task: {task}}}}}\n")
    with pytest.raises(ConfigError, match=re.escape(f"runs.{model}-{task}: {message}")):
        grid.check(read_params(path))
    with pytest.raises(ConfigError, match=f"conf/model/{model}.yaml: model '{model}'"):
        load([f"model={model}", f"task={task}"], params_path=path)
    assert load([f"model={model}", f"task={task}"], params_path=path, model=False).task.name == task


def test_grid_command_writes_every_servable_pair(tmp_path):
    from pipeline import grid
    from pipeline.config import read_params

    path = write_params(tmp_path, "# kept\nprofile: smoke\nseeds: [0, 1]\n")
    assert grid.main(["models=lstm,kim-cnn,transformer-seq2seq", "tasks=ptb,rt,bible-ende"], params_path=path) == 0
    params = read_params(path)
    assert path.read_text().startswith("# kept\n") and params.profile == "smoke" and list(params.seeds) == [0, 1]
    assert list(params.tasks) == ["ptb", "rt", "bible-ende"]
    assert set(params.runs) == {"lstm-ptb", "lstm-rt", "kim-cnn-rt", "lstm-bible-ende", "transformer-seq2seq-bible-ende"}
    assert (tmp_path / "dvc.yaml").read_text().count("python -m pipeline train") == 1  # written beside params.yaml
    assert grid.main(["models=tcn", "tasks=rt", "--add"], params_path=path) == 0
    assert "tcn-rt" in read_params(path).runs and "lstm-ptb" in read_params(path).runs
    with pytest.raises(ConfigError, match="unknown model nope"):
        grid.main(["models=nope", "tasks=rt"], params_path=path)
    with pytest.raises(ConfigError, match="profile=cpu,smoke: a grid runs under one profile"):
        grid.main(["models=tcn", "tasks=rt", "profile=cpu,smoke"], params_path=path)
    assert read_params(path).profile == "smoke"  # the refused command changed nothing
    with pytest.raises(ConfigError, match="no model of models=kim-cnn can serve tasks=ptb: kim-cnn cannot run causally"):
        grid.main(["models=kim-cnn", "tasks=ptb"], params_path=path)


def test_experiment_settings_in_params_yaml_win_over_conf_and_config_says_where_values_come_from(tmp_path):
    """params.yaml's settings sections (what `dvc exp run -S optim.lr=...` edits) apply to every run, above the
    profile's per-task values; null keeps conf/'s value; `sources` names the file that set each value."""
    path = write_params(tmp_path, "profile: cpu\ntasks: [mqar]\nruns: {lstm-mqar: {model: lstm, task: mqar}}\n"
                                  "optim: {lr: 0.02, weight_decay: null}\ntrainer: {max_epochs: null}\n")
    sources: dict = {}
    cfg = load(["model=lstm", "task=mqar"], params_path=path, sources=sources)
    assert cfg.optim.lr == 0.02 and sources["optim.lr"] == "params.yaml"
    assert cfg.trainer.max_epochs == 8 and sources["trainer.max_epochs"] == "conf/profile/cpu.yaml tasks.mqar"
    assert cfg.optim.weight_decay == load(["model=lstm", "task=mqar"], params_path=None).optim.weight_decay
    with pytest.raises(ConfigError, match="params.yaml: unknown key 'optim.lrr'"):
        load(["model=lstm", "task=mqar"], params_path=write_params(tmp_path, "optim: {lrr: 0.1}\n"))


@pytest.mark.parametrize("override, message", [
    ("model.budget_params=-5", "model.budget_params=-5 must be a positive number or null"),
    ("model.budget_params=0", "model.budget_params=0 must be a positive number or null"),
    ("data.max_train_examples=-10", "data.max_train_examples=-10 must be a positive number or null"),
    ("data.max_train_examples=0", "data.max_train_examples=0 must be a positive number or null"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: must be >= 1"),
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1: must be >= 1 (or -1 with trainer.max_steps > 0)"),
    ("optim.warmup_steps=-3", "optim.warmup_steps=-3 must be >= 0"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1.0 must be >= 0"),
    ("optim.lr=nan", "optim.lr=nan must be a positive finite number"),
    ("seeds=[]", "seeds=[] trains nothing"),
    ("trainer.devices=64", "trainer.devices=64 CPU processes on a machine with"),
    ("trainer.devices=abc", "trainer.devices='abc': give a number"),
    ("profile=paper", "has no CUDA GPU"),
])
def test_bad_values_fail_at_load_naming_the_key(override, message):
    import torch

    if override == "profile=paper" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(["model=lstm", "task=ptb", override])


def test_empty_params_yaml_and_empty_runs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="params.yaml is empty: it must set at least `profile`"):
        load([], params_path=write_params(tmp_path, "\n"))
    with pytest.raises(ConfigError, match="`runs` is empty"):
        load([], params_path=write_params(tmp_path, "tasks: [ptb]\nruns: {}\n"))


def test_bad_values_exit_2_from_the_cli_and_write_nothing(tmp_path):
    import subprocess
    import sys

    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "model=lstm", "task=rt", "optim.lr=nan",
                           f"paths.runs={runs}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "optim.lr=nan must be a positive finite number" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not runs.exists()


def test_the_cpu_full_profile_has_the_cpu_profiles_settings():
    """cpu-full runs more tasks and seeds under the cpu profile's settings (DVC stages depend on one
    profile file, so the two are copies): any drift between them fails here."""
    from pipeline.config import read_yaml

    cpu, full = read_yaml(CONF_DIR / "profile" / "cpu.yaml"), read_yaml(CONF_DIR / "profile" / "cpu-full.yaml")
    assert full == cpu
    assert {"ptb", "mqar", "selcopy", "rt", "pl-reviews", "bible-ende"} <= set(cpu["tasks"])
