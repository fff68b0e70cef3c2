"""Adding a task kind touches one module plus its task YAML: a copy of the repository gets
pipeline/kinds/tagging.py (tests/plugins/tagging.py) and conf/task/tagging-ptb.yaml, and the real
stages run it tokenize -> train -> evaluate -> report with no other file edited."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import project_env
from pipeline.config import ROOT

TASK_YAML = """task:
  name: tagging-ptb
  kind: tagging
  corpus: ptb-tags  # no download: the test writes data/raw/tagging-ptb itself
  vocab_size: 2000
  max_len: 48
"""


def tagged_lines(ptb_raw: Path, n: int = 600) -> list[str]:
    """Real PTB sentences, each word tagged by a rule a model can learn from the word itself."""
    lines = [l.split() for l in (ptb_raw / "train.txt").read_text().splitlines() if l.strip()][:n]
    return [" ".join(f"{w}/{'NUM' if w == 'N' else 'UNK' if w == '<unk>' else 'LONG' if len(w) > 5 else 'SHORT'}"
                     for w in words[:48]) for words in lines]


def run(repo: Path, *args: str) -> str:
    env = project_env(WANDB_MODE="disabled", PYTHONPATH=str(repo))
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_a_new_kind_is_one_module_and_a_yaml(tmp_path, tokenize):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "pipeline", repo / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", repo / "conf")
    shutil.copy(ROOT / "tests" / "plugins" / "tagging.py", repo / "pipeline" / "kinds" / "tagging.py")
    (repo / "conf" / "task" / "tagging-ptb.yaml").write_text(TASK_YAML)
    (repo / "params.yaml").write_text("profile: smoke\nseeds: [0]\ntasks: [tagging-ptb]\nruns:\n"
                                      "  lstm-tagging-ptb: {model: lstm, task: tagging-ptb}\n")
    raw = repo / "data" / "raw" / "tagging-ptb"
    raw.mkdir(parents=True)
    (raw / "source.json").write_text(json.dumps({"kind": "tagging", "corpus": "ptb-tags"}))
    ptb_raw = Path(tokenize("ptb")).parent / "raw" / "ptb"
    (raw / "tagged.txt").write_text("\n".join(tagged_lines(ptb_raw)) + "\n")

    run(repo, "tokenize", "task=tagging-ptb")
    run(repo, "train", "task=tagging-ptb", "model=lstm", "trainer.max_epochs=2")
    run(repo, "evaluate", "task=tagging-ptb", "model=lstm")
    run(repo, "report")

    result = json.loads((repo / "runs" / "tagging-ptb" / "lstm" / "eval.json").read_text())
    assert result["task_kind"] == "tagging" and result["buckets"]["unit"] == "token position"
    assert result["baseline"]["name"] == "majority tag"
    assert sum(result["count"]) > 0 and 0 <= result["overall"] <= 1
    report = (repo / "reports" / "report.md").read_text()
    assert "## Task `tagging-ptb` (tagging; acc, higher is better)" in report
