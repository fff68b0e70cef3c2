"""Config composition and validation: bad input fails at once, naming the key and the valid choices."""
import re

import pytest

from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, ConfigError, choices, load
from pipeline.models import registry


def test_defaults_compose_with_profile_and_task_overrides():
    cfg = load(["model=transformer", "task=ptb", "profile=cpu"])
    assert cfg.model.name == "transformer" and cfg.model.backbone == "stack"
    assert cfg.model.budget_params == 500000  # from the profile
    assert cfg.task.max_len == 512  # the profile's tasks.ptb section wins over conf/task/ptb.yaml (128)
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
    assert cfg.trainer.max_epochs == 6 and sources["trainer.max_epochs"] == "conf/profile/cpu.yaml tasks.mqar"
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


def test_bad_values_exit_2_from_the_cli_and_write_nothing(tmp_path, capsys):
    from pipeline.cli import main  # in-process: `python -m pipeline` is this call and sys.exit

    runs = tmp_path / "runs"
    assert main(["train", "model=lstm", "task=rt", "optim.lr=nan", f"paths.runs={runs}"]) == 2
    stderr = capsys.readouterr().err
    assert "optim.lr=nan must be a positive finite number" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not runs.exists()


def test_the_cpu_full_profile_has_the_cpu_profiles_settings():
    """cpu-full runs more tasks and seeds under the cpu profile's settings (DVC stages depend on one
    profile file, so the two are copies): any drift between them fails here."""
    from pipeline.config import read_yaml

    cpu, full = read_yaml(CONF_DIR / "profile" / "cpu.yaml"), read_yaml(CONF_DIR / "profile" / "cpu-full.yaml")
    assert full == cpu
    assert {"ptb", "mqar", "selcopy", "rt", "pl-reviews", "bible-ende"} <= set(cpu["tasks"])


# Every numeric field of the schema (pipeline/schema.py) is tried with each of these; a value that loads must be
# listed in VALID_EDGE_VALUES with the reason it is valid.
PROBES = (0, -1, 10**12)
VALID_EDGE_VALUES = {
    ("model.dropout", 0): "no dropout",
    ("task.split_seed", 0): "0 is a valid seed",
    ("task.synthetic.seed", 0): "0 is a valid seed",
    ("data.num_workers", 0): "0 loads data in the main process",
    ("optim.weight_decay", 0): "no weight decay",
    ("optim.beta1", 0): "Adam without momentum is valid",
    ("optim.beta2", 0): "Adam with beta2=0 (no second-moment averaging) is valid",
    ("optim.warmup_steps", 0): "no warmup",
    ("optim.lr", 10**12): "a user's choice; a diverging run stops with a one-line 'diverged' exit 2 (test_resume.py "
                          "trains with optim.lr=1e30 on purpose)",
    ("trainer.max_steps", -1): "-1 means no step limit (max_epochs bounds training)",
    ("trainer.gradient_clip_val", 0): "0 turns clipping off",
    ("trainer.gradient_clip_val", 10**12): "a norm this large is no clipping; costs nothing",
    ("trainer.num_sanity_val_steps", 0): "no sanity validation (the default)",
    ("trainer.num_sanity_val_steps", -1): "Lightning: -1 runs every validation batch as the sanity check",
    ("eval.no_repeat_ngram", 0): "0 turns the n-gram block off",
    ("bench.threads", 0): "0 keeps torch's default thread count",
    ("bench.max_mem_gb", 10**12): "a ceiling above the device's memory skips nothing by prediction; OOM is recorded",
    ("bench.cell_timeout_s", 10**12): "no timeout; each measurement is still bounded by bench.max_run_time_s",
}


def _probe_cases():
    from pipeline.config import numeric_fields

    return [(key, value) for key, _, _ in numeric_fields() for value in PROBES]


def test_every_numeric_field_refuses_zero_negative_and_huge_values_or_documents_why_they_are_valid(tmp_path, monkeypatch):
    """~180 loads: each YAML file is parsed once (cached copies), and a params.yaml with only the profile skips
    the grid checks (which read every model file), so the walk takes seconds, not a minute."""
    from pipeline import config
    from pipeline.config import numeric_fields

    parsed: dict = {}
    read = config.read_yaml

    def cached(path):
        if path not in parsed:
            parsed[path] = read(path)
        return parsed[path].copy()

    monkeypatch.setattr(config, "read_yaml", cached)
    params = write_params(tmp_path, "profile: cpu\n")

    fields = numeric_fields()
    keys = {k for k, _, _ in fields}
    # the walk reaches every section and nested task.synthetic
    assert {k.split(".")[0] for k in keys} >= {"model", "task", "data", "optim", "trainer", "tune", "eval", "bench"}
    assert {"task.synthetic.n_test", "model.budget_params", "trainer.val_check_interval"} <= keys
    assert {k for k, _ in VALID_EDGE_VALUES} <= keys
    wrong = []
    for key, value in _probe_cases():
        try:
            load(["model=lstm", "task=ptb", f"{key}={value}"], params_path=params, model=False)
        except ConfigError as e:
            message = str(e)
            if key not in message or "\n" in message or (key, value) in VALID_EDGE_VALUES:
                wrong.append(f"{key}={value}: {message}")
            continue
        if (key, value) not in VALID_EDGE_VALUES:
            wrong.append(f"{key}={value} loads but is not in VALID_EDGE_VALUES")
    assert not wrong, "\n".join(wrong)


def test_every_range_names_a_schema_field():
    from pipeline.config import RANGES, numeric_fields

    assert set(RANGES) <= {k for k, _, _ in numeric_fields()}


@pytest.mark.parametrize("override, message", [
    ("trainer.last_ckpt_every_n_steps=0", "trainer.last_ckpt_every_n_steps=0 is out of range: must be an integer in [1,"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 is out of range"),
    ("trainer.limit_val_batches=0", "trainer.limit_val_batches=0.0 is out of range: must be a number in (0, 1]"),
    ("trainer.limit_val_batches=2.5", "trainer.limit_val_batches=2.5 is out of range"),
    ("trainer.limit_val_batches=5", None),  # a whole number: 5 batches (Lightning reads 5.0 as 5)
    ("trainer.val_check_interval=10", None),  # every 10 steps
    ("trainer.val_check_interval=0", "trainer.val_check_interval=0.0 is out of range"),
    ("data.bucket_min=0", "data.bucket_min=0 is out of range"),
    ("data.bucket_pool=0", "data.bucket_pool=0 is out of range"),
    ("data.num_workers=-1", "data.num_workers=-1 is out of range: must be an integer in [0, 256]"),
    ("eval.speed_repeats=0", "eval.speed_repeats=0 is out of range"),
    ("eval.speed_batch_size=0", "eval.speed_batch_size=0 is out of range"),
    ("model.d_model=200000", "model.d_model=200000 is out of range: must be an integer in [1, 65536]"),
    ("task.synthetic.n_test=0", "task.synthetic.n_test=0 is out of range"),
    ("task.vocab_size=-3", "task.vocab_size=-3 is out of range"),
    ("seeds=[0,0]", "seeds=[0, 0]: duplicate seeds"),
    ("seeds=[-1]", "seeds=[-1]: -1 is out of range"),
    ("data.bucket_min=100000", "is below data.bucket_min=100000 (the first length bucket)"),
    ("task.head=adaptive", None),  # ptb's own cutoffs are valid
    ("optim.weight_decay=2000", "optim.weight_decay=2000.0 is out of range: must be a number in [0, 1000]"),
    ("optim.lr=1e30", None),  # a user's choice: training stops with a one-line 'diverged' (tests/test_resume.py)
])
def test_values_that_used_to_crash_later_fail_at_load(override, message):
    args = ["model=lstm", "task=ptb", override]
    if message is None:
        load(args, model=False)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(args, model=False)


def test_adaptive_cutoffs_must_increase_and_stay_below_the_vocabulary():
    base = ["model=lstm", "task=ptb", "task.head=adaptive"]
    for cutoffs in ("[6000,2000]", "[2000,2000]", "[2000,20000]"):
        with pytest.raises(ConfigError, match=re.escape("task.adaptive_cutoffs=")):
            load([*base, f"task.adaptive_cutoffs={cutoffs}", "task.vocab_size=10000"], model=False)


@pytest.mark.parametrize("arg", ["model=../model/lstm", "task=../task/ptb", "profile=Cpu", "trainer=cpu/../gpu"])
def test_group_choices_must_be_plain_names(arg):
    group = arg.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(f"{group}={arg.split('=', 1)[1]!r} is not a valid name")):
        load([arg], model=False)
