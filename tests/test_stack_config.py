"""Per-block settings of `stack` backbones: defaults < model.blocks.<name> < a layer's own dict, and
every bad key or block name is a ConfigError that names it, the block and the valid keys."""
import pytest
from omegaconf import OmegaConf

from pipeline.config import ConfigError, load
from pipeline.models.base import build_backbone
from pipeline.models.ssm import MambaSettings
from pipeline.models.stack import StackConfig, layer_plan


def stack(layers, blocks=None, **fields) -> StackConfig:
    return StackConfig(name="t", backbone="stack", d_model=16, n_heads=2, layers=layers,
                       blocks=OmegaConf.create(blocks or {}), **fields)


def test_the_model_files_reach_their_blocks():
    plan = layer_plan(load(["model=ssm-attention"]).model)
    assert [name for name, _ in plan] == ["mamba", "mamba", "attention", "ffn"]
    assert plan[0][1] == plan[1][1] == MambaSettings(d_state=16, expand=2, conv_kernel=4, chunk_size=16)
    assert plan[3][1].mult == 4
    s4d = dict(layer_plan(load(["model=s4d"]).model))
    assert s4d["s4d"].d_state == 64 and s4d["ffn"].mult == 2
    bigbird = dict(layer_plan(load(["model=bigbird"]).model))["bigbird"]
    assert (bigbird.window, bigbird.block_size, bigbird.n_global, bigbird.n_random_blocks) == (32, 32, 2, 2)


def test_a_layer_dict_beats_the_model_wide_entry_which_beats_the_defaults():
    layers, blocks = [{"mamba": {"chunk_size": 8}}, "mamba", "ffn"], {"mamba": {"d_state": 4, "chunk_size": 32}}
    plan = layer_plan(stack(layers, blocks))
    assert plan[0][1] == MambaSettings(d_state=4, chunk_size=8)
    assert plan[1][1] == MambaSettings(d_state=4, chunk_size=32)
    assert plan[2][1].mult == 4  # ffn: its default


def test_command_line_overrides_merge_into_the_file_settings():
    cfg = load(["model=mamba", "model.blocks.mamba.chunk_size=8", "model.blocks.mamba.expand=3"]).model
    assert layer_plan(cfg)[0][1] == MambaSettings(d_state=16, expand=3, conv_kernel=4, chunk_size=8)


def test_settings_are_built_into_the_blocks():
    backbone = build_backbone(stack([{"mamba": {"expand": 3}}, "ffn"], {"ffn": {"mult": 2}}, n_layers=2), causal=True)
    assert [b.registry_name for b in backbone.blocks] == ["mamba", "ffn"] * 2
    assert backbone.blocks[0].in_proj.out_features == 2 * 3 * 16 and backbone.blocks[1].up.out_features == 2 * 16


@pytest.mark.parametrize("layers,blocks,message", [
    (["mamba"], {"mamba": {"chunk": 8}},
     "model.blocks.mamba: unknown key 'chunk' for block 'mamba'; valid keys: d_state, expand, conv_kernel, chunk_size"),
    ([{"mamba": {"windw": 8}}], {},
     r"model.layers\[0\].mamba: unknown key 'windw' for block 'mamba'; valid keys: d_state"),
    (["attention"], {"attention": {"window": 3}},
     "model.blocks.attention: unknown key 'window' for block 'attention'; valid keys: \\(none"),
    (["mamba"], {"mamaba": {"d_state": 4}}, "model.blocks: unknown block 'mamaba'; registered: .*mamba"),
    (["attention", "mlp"], {}, r"model.layers\[1\]: unknown block 'mlp'; registered: .*ffn"),
    (["mamba"], {"mamba": {"chunk_size": "many"}}, "model.blocks.mamba: invalid value for block 'mamba'"),
    ([{"mamba": 3}], {}, r"model.layers\[0\]: a layer is a block name or \{name: \{setting: value\}\}"),
    ([{"mamba": {}, "ffn": {}}], {}, r"model.layers\[0\]: a layer is a block name"),
    (["mamba"], {"mamba": 16}, "model.blocks.mamba: expected a mapping"),
])
def test_bad_settings_are_config_errors_naming_key_block_and_valid_keys(layers, blocks, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(stack(layers, blocks), causal=True)


def test_an_entry_for_a_block_no_layer_uses_is_checked_but_harmless():
    cfg = load(["model=transformer", "model.layers=[attention]", "model.budget_params=null"]).model  # blocks.ffn stays
    assert [b.registry_name for b in build_backbone(cfg, causal=True).blocks] == ["attention", "attention"]
    cfg.blocks.ffn = {"mul": 2}
    with pytest.raises(ConfigError, match="model.blocks.ffn: unknown key 'mul'"):
        build_backbone(cfg, causal=True)


def test_a_block_setting_at_model_level_is_an_unknown_key():
    with pytest.raises(ConfigError, match="model.window"):
        load(["model=local-attention", "model.window=3"])


def test_a_config_saved_before_block_settings_says_to_retrain():
    """Runs keep their config as a plain dict; one from before this scheme has the knobs at model level."""
    old = OmegaConf.create({"name": "transformer", "backbone": "stack", "d_model": 16, "n_layers": 1, "dropout": 0.1,
                            "budget_params": None, "layers": ["attention", "ffn"], "n_heads": 2, "ffn_mult": 4,
                            "window": 64, "positional": "sinusoidal", "max_positions": 8192})
    with pytest.raises(ConfigError, match="ffn_mult, window are no longer stack settings.*re-run"):
        build_backbone(old, causal=True)



def test_stage_processes_keep_freed_memory():
    """Every `python -m pipeline` process sets glibc's trim and mmap thresholds before torch allocates
    (pipeline/allocator.py): training steps then re-use freed pages instead of faulting them in again."""
    import platform
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.allocator import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":  # no mallopt (macOS, musl): nothing set, nothing to measure
        assert keep_freed_memory() is False
        return
    assert keep_freed_memory() is True
    assert "keep_freed_memory()" in (Path(__file__).parents[1] / "pipeline" / "__main__.py").read_text()
    code = ("import resource, sys, torch\n"
            "if sys.argv[1] == 'keep':\n"
            "    from pipeline.allocator import keep_freed_memory\n"
            "    keep_freed_memory()\n"
            "torch.set_num_threads(1)\n"
            "model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))\n"
            "x = torch.randn(512, 256)\n"
            "def step():\n"
            "    model(x).square().mean().backward()\n"
            "for _ in range(10): step()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(20): step()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {how: int(subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True,
                                      check=True).stdout) for how in ("default", "keep")}
    assert faults["keep"] < faults["default"] / 4, faults  # measured: 3,200-6,800 -> 1-510 page faults in 20 steps
