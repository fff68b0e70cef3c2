"""Every model config × every task it can serve: builds on real tokenized data (small variants of
every task kind: conftest.TEST_TASKS) and its loss falls by 20% in 40 steps on one batch.

Backbones (conf/model/) serve every task: classification with any backbone, LM, recall and
decoder-only translation with the causal ones. Encoder–decoder models (choices("seq2seq")) serve
translation only. Pairs a model cannot serve are skipped, and that refusal is tested too.
"""
import pytest
import torch

from conftest import TEST_TASKS
from pipeline import kinds
from pipeline.config import ConfigError, choices, load, model_backbone, to_dict
from pipeline.models import registry
from pipeline.tasks.trainable import SequenceDataModule, trainable

STEPS, DROP = 40, 0.8  # the loss must fall below DROP x its start within STEPS steps
pytestmark = pytest.mark.usefixtures("one_thread")
KIND = {task: load([f"task={task}"], model=False).task.kind for task in TEST_TASKS}  # lm, classify, recall, translate


def pairs() -> list:
    """(model, task) for every backbone × task, and every encoder–decoder model × translation task."""
    out = [(model, task) for task in TEST_TASKS for model in choices("model")]
    out += [(model, task) for task in TEST_TASKS if KIND[task] == "translate" for model in choices("seq2seq")]
    return [pytest.param(model, task, id=f"{model}-{task}") for model, task in out]


def config(model: str, task: str, *extra: str):
    return load([f"model={model}", f"task={task}", "profile=smoke", "model.dropout=0.0", "data.batch_size=8",
                 *TEST_TASKS[task], *extra])


def cannot_serve(backbone: str, kind: str) -> bool:
    """A backbone that cannot run causally, on a task whose module builds it causally."""
    if backbone in registry.seq2seq_names():
        return False
    return kinds.get(kind).causal and not registry.backbone_class(backbone).causal_capable


@pytest.mark.parametrize("model, task", pairs())
def test_model_learns_task(model, task, tokenize):
    if cannot_serve(model_backbone(model), KIND[task]):
        pytest.skip(f"{model} is not causal, so it cannot serve the {KIND[task]} task {task}")
    cfg = config(model, task)
    cfg.paths.tokenized = str(tokenize(task))
    torch.manual_seed(0)
    dm = SequenceDataModule(cfg, seed=0)
    batch = next(iter(dm.train_dataloader()))
    module = trainable(kinds.get(cfg.task.kind).task_module())(to_dict(cfg), dm.meta)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)

    def loss():
        terms, weights, buckets, values = module.per_example(batch)
        assert terms.shape == weights.shape == buckets.shape == values.shape
        assert int(buckets.max()) < len(module.bucket_edges)
        assert weights.sum() > 0  # something to learn: targets survived batching
        return (terms * weights).sum() / weights.sum()

    start = loss().item()
    for _ in range(STEPS):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert torch.isfinite(value)
    assert loss().item() < DROP * start, f"{model}/{task}: loss {start:.3f} -> {loss().item():.3f}"


def test_non_causal_models_refuse_causal_tasks():
    """The pairs skipped above fail when the config is loaded (the meta-device build), naming the model
    file and the model, instead of silently peeking ahead or failing later inside a stage."""
    refused = [(model, task) for model in choices("model") for task in TEST_TASKS
               if cannot_serve(model_backbone(model), KIND[task])]
    assert refused, "expected at least one bidirectional-only backbone"
    for model, task in refused:
        with pytest.raises(ConfigError, match=f"conf/model/{model}.yaml: model '{model}'.*cannot run causally"):
            config(model, task)


def test_nan_loss_stops_training_with_a_clear_message(tokenized_root):
    import lightning as L

    from pipeline.tasks.base import NonFiniteLossError

    cfg = load(["model=lstm", "task=rt", "profile=smoke", f"paths.tokenized={tokenized_root}"])
    dm = SequenceDataModule(cfg, seed=0)
    module = trainable(kinds.get(cfg.task.kind).task_module())(to_dict(cfg), dm.meta)
    with torch.no_grad():
        module.embed.weight.fill_(float("nan"))
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, use_distributed_sampler=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match="lower optim.lr"):
        trainer.fit(module, datamodule=dm)


def test_long_documents_are_bucketed_by_the_length_the_model_saw(tokenize):
    """Pang & Lee reviews (~1,000 tokens) cut to 64: every test review falls in the bucket of 64 tokens,
    not in one of its full length, and eval.json's unit says how many were cut and which end was kept."""
    from pipeline import buckets

    cfg = config("kim-cnn", "pl-reviews", "task.truncate=tail")
    cfg.paths.tokenized = str(tokenize("pl-reviews"))
    dm = SequenceDataModule(cfg, seed=0)
    module = trainable(kinds.get(cfg.task.kind).task_module())(to_dict(cfg), dm.meta)
    assert module.bucket_edges[-1] == 64
    batch = next(iter(dm.test_dataloader()))
    assert (batch["length"] > 64).all()  # whole reviews are longer than what the model sees
    _, _, bucket, _ = module.per_example(batch)
    assert (bucket == buckets.index(batch["mask"].sum(1), module.bucket_edges)).all()
    assert (bucket == len(module.bucket_edges) - 1).all()
    test = dm.meta["splits"]["test"]
    assert kinds.get("classify").bucket_label(cfg.task, dm.meta) == (
        f"document tokens seen ({test['over_max_len']} of {test['examples']} test documents cut to their last 64 tokens)")


@pytest.mark.parametrize("model", ["lstm", "transformer", "kim-cnn"])
def test_budget_scope_total_matches_embeddings_and_heads_too(model, tokenize):
    """budget_scope total: the whole task model (embedding + backbone + head) lands within tolerance of
    the budget; backbone scope matches the backbone alone and leaves the rest to the vocabulary."""
    from pipeline.models.sizing import TOLERANCE

    counts = {}
    for scope in ("backbone", "total"):
        cfg = config(model, "rt", "model.budget_params=400000", f"model.budget_scope={scope}")
        cfg.paths.tokenized = str(tokenize("rt"))
        dm = SequenceDataModule(cfg, seed=0)
        module = trainable(kinds.get(cfg.task.kind).task_module())(to_dict(cfg), dm.meta)
        counts[scope] = module.param_counts()
        assert module.sizing["budget_scope"] == scope
    assert abs(counts["backbone"]["backbone"] - 400_000) / 400_000 <= TOLERANCE
    assert abs(counts["total"]["total"] - 400_000) / 400_000 <= TOLERANCE
    assert counts["total"]["backbone"] < counts["backbone"]["backbone"]


def test_an_unknown_budget_scope_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"model.budget_scope='all' is not valid; choose one of: backbone, total"):
        config("lstm", "rt", "model.budget_scope=all")
