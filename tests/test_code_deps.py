"""Every stage of dvc.yaml depends on exactly the code it runs and on the configs it reads: its import
closure (pipeline/code_deps.py) against the deps DVC resolves, both ways, for every stage of the grid."""
import pytest
from omegaconf import OmegaConf

from pipeline import code_deps
from pipeline.config import PARAMS, ROOT


@pytest.fixture(scope="module")
def stages() -> dict[str, list[str]]:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.addressing: [str(d.def_path) for d in s.deps] for s in repo.index.stages}


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


def test_params_code_entries_are_current():
    """params.yaml's code slots are what `grid` computes now (an edited import needs `grid` again)."""
    params = OmegaConf.load(PARAMS)
    for task, entry in params.tasks.items():
        assert list(entry.code) == code_deps.task_code(task), f"tasks.{task}.code is stale: run `python -m pipeline grid`"
    for key, run in params.runs.items():
        assert list(run.code) == code_deps.run_code(str(run.model), str(run.task)), f"runs.{key}.code is stale"
    for model, entry in params.bench.items():
        assert list(entry.code) == code_deps.bench_code(model), f"bench.{model}.code is stale"


def test_a_model_outside_the_grid_is_in_no_stage_closure():
    params = OmegaConf.load(PARAMS)
    used = {str(r.model) for r in params.runs.values()} | set(params.bench)
    files = set().union(*(code_deps.stage_files(s, m, code_deps.task_kind(str(r.task)))
                          for r in params.runs.values() for s, m in [("train", str(r.model))]))
    assert "rwkv" not in used and "pipeline/models/rwkv.py" not in files
    assert code_deps.model_modules("rwkv") >= {"rwkv"}


def test_every_servable_pair_fits_the_code_slots_and_one_that_does_not_is_refused_with_the_fix(monkeypatch):
    """Decoder-only models on translation import 11 files beyond the run stages' common ones, the most
    of any pair: every pair `grid models=all tasks=all` can write fits dvc.yaml's slots. With fewer
    slots `grid` refuses such a run with one line naming the files and the fix, not a traceback."""
    from pipeline import grid
    from pipeline.config import ConfigError, all_choices, choices

    pairs = [pair for pair, why_not in grid.reasons(all_choices("model"), choices("task")).items() if why_not is None]
    widest = max((len(set(code_deps.run_code(m, t))), m, t) for m, t in pairs)
    assert widest[0] <= code_deps.CODE_SLOTS, widest
    monkeypatch.setattr(code_deps, "CODE_SLOTS", 10)
    with pytest.raises(ConfigError, match=r"needs 11 code deps .* raise config.CODE_SLOTS"):
        code_deps.run_code("bigbird", "bible-ende")
