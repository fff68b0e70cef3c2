"""Every stage of dvc.yaml depends on exactly the code it runs and on the configs it reads: its import
closure (pipeline/code_deps.py) against the deps DVC resolves, both ways, for every stage of the grid."""
import shutil

import pytest
from omegaconf import OmegaConf

from pipeline import code_deps
from pipeline.config import PARAMS, ROOT


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, list[str]]:
    """The committed dvc.yaml's stages (conftest copies it beside params.yaml), parsed by DVC in a temporary
    project that links this one's code and configs."""
    from dvc.repo import Repo

    project = tmp_path_factory.mktemp("project")
    for rel in ("dvc.yaml", "params.yaml"):
        shutil.copy2(PARAMS.parent / rel, project / rel)
    for rel in ("conf", "pipeline"):
        (project / rel).symlink_to(ROOT / rel)
    Repo.init(str(project), no_scm=True)
    with Repo(str(project)) as repo:
        return {s.name: [str(d.def_path) for d in s.deps] for s in repo.index.stages}


def expand(deps: list[str], prefix: str) -> set[str]:
    """Deps under `prefix`, a directory standing for every file in it (.py for code)."""
    out = set()
    for dep in (d for d in deps if d.startswith(prefix)):
        path = ROOT / dep
        out |= {str(p.relative_to(ROOT)) for p in path.rglob("*.py")} if path.is_dir() else {dep}
    return out


def plugins(name: str, key: str, params) -> tuple[str | None, str | None, str | None]:
    """(model, task, kind) of one stage instance."""
    if name in ("train", "evaluate", "measure"):
        run = params.runs[key]
        return str(run.model), str(run.task), code_deps.task_kind(str(run.task))
    if name in ("download", "tokenize"):
        return None, key, code_deps.task_kind(key)
    if name == "benchmark":
        return key, None, None
    return None, None, None


def test_every_stage_depends_on_exactly_the_code_it_imports(stages):
    params = OmegaConf.load(PARAMS)
    assert {s.split("@")[0] for s in stages} == {"download", "tokenize", "train", "evaluate", "measure", "benchmark",
                                                  "report"}
    for address, deps in stages.items():
        name, _, key = address.partition("@")
        model, _, kind = plugins(name, key, params)
        expected = code_deps.stage_files(name, model, kind)
        listed = expand(deps, "pipeline/")
        assert not expected - listed, f"{address} imports but does not depend on {sorted(expected - listed)}"
        assert not listed - expected, f"{address} depends on code it never imports: {sorted(listed - expected)}"


def test_every_stage_reads_only_its_own_configs(stages):
    params = OmegaConf.load(PARAMS)
    for address, deps in stages.items():
        name, _, key = address.partition("@")
        model, task, _ = plugins(name, key, params)
        confs = [d for d in deps if d.startswith("conf/")]
        assert all((ROOT / d).is_file() for d in confs), f"{address}: a conf directory re-runs it for every file in it"
        allowed = {"conf/config.yaml", "conf/trainer/cpu.yaml", "conf/logger/wandb.yaml",
                   f"conf/profile/{params.profile}.yaml", f"conf/model/{model}.yaml", f"conf/task/{task}.yaml"}
        assert set(confs) <= allowed, f"{address}: depends on another group's choice: {sorted(set(confs) - allowed)}"
        for needed in ([f"conf/model/{model}.yaml"] if model else []) + ([f"conf/task/{task}.yaml"] if task else []):
            assert needed in confs, f"{address} does not depend on {needed}"


def test_dvc_yaml_is_what_grid_generates_from_params_yaml():
    """dvc.yaml is generated (pipeline/dvc_file.py): a hand edit, or an import added without `grid`, is caught."""
    from pipeline import dvc_file

    dvc_file.check_current(PARAMS, PARAMS.parent / "dvc.yaml")  # both as committed (conftest)


def test_a_hand_edited_grid_gets_the_projects_error_naming_the_fix(tmp_path):
    from pipeline import dvc_file
    from pipeline.config import ConfigError

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("runs:\n", "runs:\n  gru-ptb: {model: gru, task: ptb}\n"))
    with pytest.raises(ConfigError, match=r"dvc.yaml is out of date .*python -m pipeline grid"):
        dvc_file.check_current(params)


def test_every_servable_pair_generates_a_parseable_stage(tmp_path):
    """`grid models=all tasks=all`: every pair any model can serve, each with its own code and profile keys, in
    a dvc.yaml that DVC itself parses (slots as wide as the widest instance; no fixed count to outgrow)."""
    from dvc.repo import Repo

    from pipeline import dvc_file, grid
    from pipeline.config import all_choices, choices

    pairs = [pair for pair, why_not in grid.reasons(all_choices("model"), choices("task")).items() if why_not is None]
    params = OmegaConf.create({"profile": "cpu-full", "seeds": [0], "tasks": choices("task"),
                               "runs": grid.run_entries(pairs), "bench": choices("model")})
    (tmp_path / "dvc.yaml").write_text(dvc_file.render(params))
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(OmegaConf.merge(params, grid.SETTINGS)))
    for rel in ("conf", "pipeline"):
        (tmp_path / rel).symlink_to(ROOT / rel)
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        found = {s.name: s for s in repo.index.stages}
    assert {f"train@{m}-{t}" for m, t in pairs} <= set(found)
    bigbird = [str(d.def_path) for d in found["train@bigbird-bible-ende"].deps]
    assert set(expand(bigbird, "pipeline/")) == code_deps.stage_files("train", "bigbird", "translate")


def test_a_model_outside_the_grid_is_in_no_stage_closure():
    params = OmegaConf.load(PARAMS)
    used = {str(r.model) for r in params.runs.values()} | set(params.bench)
    files = set().union(*(code_deps.stage_files(s, m, code_deps.task_kind(str(r.task)))
                          for r in params.runs.values() for s, m in [("train", str(r.model))]))
    assert "rwkv" not in used and "pipeline/models/rwkv.py" not in files
    assert code_deps.model_modules("rwkv") >= {"rwkv"}


def test_download_and_tokenize_never_run_model_code():
    for stage in ("download", "tokenize"):
        assert not {f for f in code_deps.common_files(stage) if f.startswith("pipeline/models/")} - {
            "pipeline/models/__init__.py", "pipeline/models/registry.py"}, stage  # the name registry reads no model


def test_the_readmes_stage_examples_name_stages_of_the_default_grid(stages):
    """Every `make stage S=...` / `dvc repro <stage>` in README.md is a stage of the committed dvc.yaml (the one
    the README's `make stage` runs in a fresh clone is exercised by tests/test_pipeline_dvc.py)."""
    import re

    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"(?<!\w)S=([\w@-]+)", readme)) | set(re.findall(r"dvc repro (?:-\w+ )*(\w+@[\w-]+)", readme))
    assert named, "the README shows no one-stage example"
    names = {address.split(":")[-1] for address in stages}
    assert named <= names, f"README names stages the default grid does not have: {sorted(named - names)}"
