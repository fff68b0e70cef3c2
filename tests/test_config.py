"""Config composition and validation: bad input fails at once, naming the key and the valid choices."""
import pytest

from pipeline.config import ConfigError, choices, load
from pipeline.models import registry


def test_defaults_compose_with_profile_and_task_overrides():
    cfg = load(["model=transformer", "task=ptb", "profile=cpu"])
    assert cfg.model.name == "transformer" and cfg.model.backbone == "stack"
    assert cfg.model.budget_params == 500000  # from the profile
    assert cfg.task.max_len == 64  # the profile's tasks.ptb section wins over conf/task/ptb.yaml
    assert cfg.optim.lr == 1e-3  # from the model file


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
        cfg = load([f"model={name}"])
        assert cfg.model.backbone in registry.names()


def test_every_registered_backbone_has_a_model_file():
    used = {load([f"model={name}"]).model.backbone for name in choices("model")}
    assert set(registry.names()) <= used, f"backbones without conf/model/*.yaml: {set(registry.names()) - used}"


def test_every_block_is_used_by_some_model_file():
    used = set()
    for name in choices("model"):
        used |= set(load([f"model={name}"]).model.get("layers", []) or [])
    assert set(registry.block_names()) <= used, f"blocks no model uses: {set(registry.block_names()) - used}"


def test_params_yaml_grid_is_valid():
    from pipeline.config import read_params

    params = read_params()
    for model in params.grid.models:
        assert model in choices("model")
    for task in params.grid.tasks:
        assert task in choices("task")
