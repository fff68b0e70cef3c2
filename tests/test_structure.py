"""The shape of the code itself: no import cycles, a config that imports no torch, plug-in
registries that cannot drift from the modules that register, and no oversized module."""
import subprocess
import sys

import pytest

from pipeline import kinds
from pipeline.code_deps import import_graph  # the graph dvc.yaml's code deps come from
from pipeline.config import ROOT, choices, load

PIPELINE = ROOT / "pipeline"
MAX_LINES = 420  # "no file over ~400 lines"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_pipeline():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("statement", [
    "import pipeline.config",
    "from pipeline.config import load; load(['task=ptb'], model=False)",
    "import pipeline.stages.download, pipeline.stages.tokenize, pipeline.stages.report",
    "from pipeline.models import registry; registry.names(); registry.seq2seq_names()",
    "from pipeline import kinds; [kinds.get(k) for k in kinds.names()]",
])
def test_config_data_and_report_import_no_torch(statement):
    code = f"import sys; {statement}; assert 'torch' not in sys.modules, 'torch imported'; " \
           "assert not [m for m in sys.modules if m.startswith('pipeline.models.') and " \
           "m.split('.')[-1] not in ('registry',)], sorted(m for m in sys.modules if m.startswith('pipeline.models'))"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("statement", [
    "import pipeline.stages.evaluate, pipeline.stages.measure",
    "from pipeline import kinds; from pipeline.tasks import checkpoint; [kinds.get(k).task_module() for k in kinds.names()]",
])
def test_evaluate_and_measure_import_no_lightning(statement):
    """Only the train stage trains: the stages that load a checkpoint never import Lightning or
    torchmetrics (pipeline/tasks/trainable.py holds what training adds)."""
    code = f"import sys; {statement}; " \
           "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics', 'pytorch_lightning'}); " \
           "assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_kind_registry_matches_its_modules():
    """names() reads decorators from source; importing every module registers exactly those."""
    scanned = set(kinds.names())
    assert scanned >= {"lm", "classify", "recall", "translate"}
    for name in scanned:
        assert kinds.get(name).name == name
    assert set(kinds.registered()) == scanned
    for task in choices("task"):
        assert load([f"task={task}"], model=False).task.kind in scanned


def test_unknown_kind_is_a_config_error():
    from pipeline.schema import ConfigError

    with pytest.raises(ConfigError, match="task.kind='tagging' is not a registered task kind; choose one of: classify"):
        kinds.get("tagging")


def test_no_oversized_module():
    big = {str(p.relative_to(ROOT)): n for p in PIPELINE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"split these modules: {big}"


def test_cli_help_lists_stages_groups_and_choices_and_config_prints_the_resolved_config():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)

    top = cli("--help")
    assert top.returncode == 0
    for word in ("download", "tokenize", "train", "evaluate", "benchmark", "report", "grid", "config",
                 "model=bigbird|", "task=bible-ende|", "profile=cpu|cpu-full|paper|smoke"):
        assert word in top.stdout
    helped = cli("train", "--help").stdout  # the stage's own usage and description, not the global list
    assert helped.startswith("usage: python -m pipeline train") and "fit model on task" in helped
    assert "train stage:" in helped
    shown = cli("config", "model=lstm", "task=rt", "profile=smoke", "optim.lr=0.01")
    assert shown.returncode == 0 and "lr: 0.01" in shown.stdout and "name: rt" in shown.stdout
    bad = cli("trian")
    assert bad.returncode == 2 and "unknown command 'trian'; choose one of: download" in bad.stderr


def test_corrupt_intermediates_give_one_line_naming_the_file_and_the_stage(tmp_path, tokenized_root):
    """A truncated .npy, meta.json or checkpoint: exit 2 and one line that names the file and what to
    re-run, not a traceback."""
    import shutil

    tok = tmp_path / "tok"
    shutil.copytree(tokenized_root / "rt", tok / "rt")

    def evaluate_rt(*extra):
        return subprocess.run([sys.executable, "-m", "pipeline", "train", "model=lstm", "task=rt", "profile=smoke",
                               "logger.mode=disabled", f"paths.tokenized={tok}", f"paths.runs={tmp_path / 'runs'}",
                               *extra], cwd=ROOT, capture_output=True, text=True)

    ids = tok / "rt" / "train.ids.npy"
    ids.write_bytes(ids.read_bytes()[: len(ids.read_bytes()) // 2])
    done = evaluate_rt()
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    # a truncated array fails its meta.json checksum before it is parsed
    assert "train.ids.npy does not match the checksum" in done.stderr and "dvc repro tokenize@rt" in done.stderr
    meta = tok / "rt" / "meta.json"
    meta.write_text(meta.read_text()[:100])
    done = evaluate_rt()
    assert done.returncode == 2 and "meta.json is corrupt" in done.stderr and "tokenize@rt" in done.stderr
    done_marker = tmp_path / "runs" / "rt" / "lstm" / "ckpt" / "seed0" / "result.json"  # read first: finished?
    done_marker.parent.mkdir(parents=True, exist_ok=True)
    done_marker.write_text('{"seed": 0, "steps"')
    shutil.rmtree(tok / "rt")
    shutil.copytree(tokenized_root / "rt", tok / "rt")
    done = subprocess.run([sys.executable, "-m", "pipeline", "evaluate", "model=lstm", "task=rt", "profile=smoke",
                           "logger.mode=disabled", f"paths.tokenized={tok}", f"paths.runs={tmp_path / 'runs'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "result.json is corrupt" in done.stderr and "train@lstm-rt" in done.stderr, \
        done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1
