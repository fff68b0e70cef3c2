"""CPU peak memory = high-water mark of live tensor bytes (pipeline/measure/memory.py)."""
import torch

from pipeline.measure.memory import LiveTensorBytes, peak_memory_mb

CPU = torch.device("cpu")
MIB = 2**20


def test_counts_tensors_alive_at_the_same_time():
    def both_alive():
        a = torch.ones(MIB // 4)  # 1 MiB of float32
        b = torch.ones(MIB // 2)  # 2 MiB while a is alive
        return a.sum() + b.sum()

    def freed_in_between():
        torch.ones(MIB // 4).sum()  # freed at once
        torch.ones(MIB // 2).sum()

    assert abs(peak_memory_mb(both_alive, CPU) - 3.0) < 0.01
    assert abs(peak_memory_mb(freed_in_between, CPU) - 2.0) < 0.01


def test_views_are_counted_once_and_released_with_their_last_holder():
    with LiveTensorBytes() as m:
        base = torch.zeros(MIB // 4)
        view = base[: MIB // 8]
        del base
        assert m.live == MIB  # the view still holds the storage
        del view
        assert m.live == 0
    assert m.peak == MIB


def test_activations_of_a_forward_pass_scale_with_batch():
    layer = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    with torch.no_grad():
        small = peak_memory_mb(lambda: layer(torch.randn(1000, 64)), CPU)
        large = peak_memory_mb(lambda: layer(torch.randn(4000, 64)), CPU)
    assert small > 1000 * 256 * 4 / MIB  # at least the hidden activation
    assert 3.5 < large / small < 4.5
