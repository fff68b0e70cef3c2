"""Every model config × every task: builds on real tokenized data and its loss falls (by 20%) in 40 steps on one batch."""
import pytest
import torch

from pipeline.config import choices, load, to_dict
from pipeline.data.datamodule import SequenceDataModule
from pipeline.models import registry
from pipeline.tasks.registry import task_class

TASKS = ["ptb", "rt"]


def first_batch(cfg):
    dm = SequenceDataModule(cfg, seed=0)
    return dm, next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", choices("model"))
def test_model_learns_task(model, task, tokenized_root):
    cfg = load([f"model={model}", f"task={task}", "profile=smoke", "model.dropout=0.0",
                f"paths.tokenized={tokenized_root}", "data.batch_size=8"])
    if cfg.task.kind == "lm" and not registry.backbone_class(cfg.model.backbone).causal_capable:
        pytest.skip(f"{model} is not causal, so it cannot serve language modelling")
    torch.manual_seed(0)
    dm, batch = first_batch(cfg)
    module = task_class(cfg.task.kind)(to_dict(cfg), dm.meta)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)

    def loss():
        terms, weights, buckets, values = module.per_example(batch)
        assert terms.shape == weights.shape == buckets.shape == values.shape
        assert int(buckets.max()) < len(module.bucket_edges)
        return (terms * weights).sum() / weights.sum()

    start = loss().item()
    for _ in range(40):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert torch.isfinite(value)
    assert loss().item() < 0.8 * start, f"{model}/{task}: loss {start:.3f} -> {loss().item():.3f}"


def test_nan_loss_stops_training_with_a_clear_message(tokenized_root):
    import lightning as L

    from pipeline.tasks.base import NonFiniteLossError

    cfg = load(["model=lstm", "task=rt", "profile=smoke", f"paths.tokenized={tokenized_root}"])
    dm = SequenceDataModule(cfg, seed=0)
    module = task_class(cfg.task.kind)(to_dict(cfg), dm.meta)
    with torch.no_grad():
        module.embed.weight.fill_(float("nan"))
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, use_distributed_sampler=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match="lower optim.lr"):
        trainer.fit(module, datamodule=dm)
