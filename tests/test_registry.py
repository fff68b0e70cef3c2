"""The lazy registry: names come from a scan of the source (no import, no torch), a lookup imports only
the module that defines the name, and what a module registers is exactly what the scan reads."""
import importlib
import pkgutil
import subprocess
import sys
import textwrap

import pytest
import torch

import pipeline.models
from pipeline.config import ROOT, ConfigError, load
from pipeline.models import registry
from pipeline.models.base import build_backbone
from pipeline.models.stack import StackConfig

MODULES = sorted(info.name for info in pkgutil.iter_modules(pipeline.models.__path__))


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, cwd=ROOT)


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_module_registers_exactly_what_the_scan_reads(module):
    name = f"pipeline.models.{module}"
    importlib.import_module(name)
    scanned = {(kind, n) for kind, table in registry.scan().items() for n, m in table.items() if m == name}
    assert registry.registered(name) == scanned


def test_every_name_resolves_to_a_class_registered_under_it():
    assert registry.names() and registry.block_names() and registry.seq2seq_names()
    for name in registry.names():
        assert registry.backbone_class(name).registry_name == name
    for name in registry.block_names():
        assert registry.block_class(name).registry_name == name
    for name in registry.seq2seq_names():
        assert registry.seq2seq_class(name).registry_name == name


def test_listing_names_imports_no_model_code_and_no_torch():
    run_python("""
        import sys
        from pipeline.models import registry
        assert registry.names() and registry.block_names() and registry.seq2seq_names()
        loaded = [m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("pipeline.models.")]
        assert loaded == ["pipeline.models.registry"], loaded
    """)


def test_a_lookup_imports_only_the_module_that_defines_the_name():
    run_python("""
        import sys
        from pipeline.models import registry
        registry.block_class("mamba")
        registry.config_class("lstm")
        loaded = sorted(m for m in sys.modules if m.startswith("pipeline.models."))
        assert loaded == ["pipeline.models.base", "pipeline.models.registry", "pipeline.models.rnn",
                          "pipeline.models.ssm", "pipeline.models.ssm_cpu"], loaded
    """)


def test_unknown_names_are_config_errors_that_list_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'nope'; registered: .*lstm"):
        registry.backbone_class("nope")
    with pytest.raises(ConfigError, match="conf/model/x.yaml: unknown backbone 'nope'"):
        registry.config_class("nope", source="conf/model/x.yaml")
    with pytest.raises(ConfigError, match="unknown block 'mlp'; registered: .*ffn"):
        registry.block_class("mlp")
    with pytest.raises(ConfigError, match="unknown seq2seq model 'lstm'"):
        registry.seq2seq_class("lstm")


def test_kim_cnn_is_registered_under_its_conf_name():
    assert "kim-cnn" in registry.names() and "kim_cnn" not in registry.names()


def test_a_decorator_without_a_literal_name_is_refused(tmp_path):
    path = tmp_path / "dynamic.py"
    path.write_text('NAME = "x"\n\n@register_block(NAME)\nclass X:\n    pass\n')
    with pytest.raises(ValueError, match="string literal"):
        registry.decorated_names(path)


TOY_BLOCK = '''
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models.base import Block
from pipeline.models.registry import register_block


@dataclass
class GateSettings:
    gain: float = 1.0


@register_block("gate", GateSettings)
class Gate(Block):
    position_wise = True

    def __init__(self, cfg, causal, settings=None):
        super().__init__(cfg, causal, settings)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x, mask=None):
        return self.settings.gain * torch.sigmoid(self.proj(x)) * x
'''


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A package outside pipeline/models with one new block that has a setting of its own."""
    package = tmp_path / "toyblocks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gate.py").write_text(TOY_BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PACKAGES", [*registry.PACKAGES, ("toyblocks", package)])
    monkeypatch.setitem(registry._REGISTERED, registry.BLOCK, dict(registry._REGISTERED[registry.BLOCK]))
    yield
    for name in ("toyblocks.gate", "toyblocks"):
        sys.modules.pop(name, None)


def test_a_block_with_its_own_setting_is_one_module(toy_package):
    """The toy module is the only code: the registry finds it, YAML-style config reaches its setting,
    and a bad key is rejected with the block's valid keys."""
    assert "gate" in registry.block_names()
    cfg = load(["model=transformer", "model.layers=[gate,attention,ffn]", "model.blocks.gate.gain=2.0",
                "model.budget_params=null", "model.d_model=16", "model.n_layers=1"]).model
    backbone = build_backbone(cfg, causal=True)
    assert backbone.blocks[0].registry_name == "gate" and backbone.blocks[0].settings.gain == 2.0
    assert backbone(torch.randn(2, 5, 16)).shape == (2, 5, 16) and backbone.has_step
    per_layer = StackConfig(name="t", backbone="stack", d_model=16, n_layers=1,
                            layers=[{"gate": {"gain": 3.0}}, "gate"])
    assert [b.settings.gain for b in build_backbone(per_layer, causal=True).blocks] == [3.0, 1.0]
    cfg.blocks.gate = {"gian": 2.0}
    with pytest.raises(ConfigError, match="model.blocks.gate: unknown key 'gian' for block 'gate'; valid keys: gain"):
        build_backbone(cfg, causal=True)
