"""MQAR as Zoology draws it (pipeline/data/synthetic.py): random filler, power-law query gaps, pairs
scaled with length and a mixture of training lengths; the defaults stay generator version 2's data."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from pipeline.config import load
from pipeline.data import synthetic
from pipeline.schema import ConfigError, SyntheticConfig

# The cpu profile's MQAR (conf/profile/cpu.yaml) and a train_pairs mixture, with every new option at its default.
CPU_MQAR = dict(seq_len=64, num_pairs=4, n_train=8000, n_val=500, n_test=1000, sweep_pairs=[2, 8, 16])
PAIRS_MIXTURE = dict(seq_len=48, num_pairs=4, n_train=300, n_val=50, n_test=60, train_pairs=[2, 4, 8],
                     extrapolate=[2], vocab=40)
# blake2b over "split.field.npy=<blake2b of the np.save bytes>" lines, computed with the generator at 74ad41f
# (before these options). CPU_MQAR's per-file digests are those in the cpu run's data/tokenized/mqar/meta.json.
DIGEST_CPU_MQAR = "6a9c6da22eeac580812c8b81f3373f91"
DIGEST_PAIRS_MIXTURE = "998f6cc02dc821ae06596397d5b4ad34"


def split_digests(cfg: SyntheticConfig) -> str:
    """One digest of every split's arrays as the tokenize stage saves them (np.save, int32 / int64)."""
    lines = []
    for split in synthetic.split_lengths(cfg):
        data = synthetic.generate("mqar", cfg, split)
        for field, array, dtype in (("ids", data.ids, np.int32), ("offsets", data.offsets, np.int64),
                                    ("targets", data.targets, np.int32)):
            buffer = io.BytesIO()
            np.save(buffer, array.astype(dtype))
            lines.append(f"{split}.{field}.npy=blake2b:{hashlib.blake2b(buffer.getvalue(), digest_size=32).hexdigest()}")
    return hashlib.blake2b("\n".join(sorted(lines)).encode(), digest_size=16).hexdigest()


def test_default_options_reproduce_generator_version_2_byte_for_byte():
    assert split_digests(SyntheticConfig(**CPU_MQAR)) == DIGEST_CPU_MQAR
    assert split_digests(SyntheticConfig(**PAIRS_MIXTURE)) == DIGEST_PAIRS_MIXTURE
    assert len(synthetic.tokens("mqar", SyntheticConfig(**CPU_MQAR))) == 5 + 1 + 128  # no filler tokens


def rows(data: synthetic.Split) -> list[tuple[np.ndarray, np.ndarray]]:
    o = data.offsets
    return [(data.ids[a:b], data.targets[a:b]) for a, b in zip(o[:-1], o[1:])]


def check_rows(data: synthetic.Split, vocab: int) -> None:
    """Every row: k distinct keys then their values, each key queried once after the pairs, the target the
    paired value, and no key or value token anywhere else."""
    half = vocab // 2
    key0, val0 = synthetic.N_SPECIAL + 1, synthetic.N_SPECIAL + 1 + half
    for ids, tgt in rows(data):
        queries = np.flatnonzero(tgt >= 0)
        k = len(queries)
        keys, values = ids[0:2 * k:2], ids[1:2 * k:2]
        assert ((keys >= key0) & (keys < val0)).all() and ((values >= val0) & (values < val0 + half)).all()
        assert len(set(keys)) == k and len(set(values)) == k and queries.min() >= 2 * k
        paired = dict(zip(keys, values))
        assert all(tgt[t] == paired[ids[t]] for t in queries)
        rest = np.setdiff1d(np.arange(2 * k, len(ids)), queries)
        assert not ((ids[rest] >= key0) & (ids[rest] < val0 + half)).any()  # filler is never a key or a value


def test_random_filler_only_replaces_the_blanks_and_leaves_labels_and_floor_alone():
    base = dict(seq_len=64, num_pairs=4, vocab=40, n_train=50, n_val=20, n_test=400, sweep_pairs=[2, 16])
    blank, random = SyntheticConfig(**base), SyntheticConfig(**base, filler="random", filler_vocab=30)
    vocab = synthetic.tokens("mqar", random)
    assert vocab[:len(synthetic.tokens("mqar", blank))] == synthetic.tokens("mqar", blank)
    assert vocab[-30:] == [f"f{i}" for i in range(30)] and len(vocab) == 5 + 1 + 40 + 30
    filler0 = 5 + 1 + 40
    for split, k in (("test", 4), ("test_2pairs", 2), ("test_16pairs", 16)):
        a, b = synthetic.generate("mqar", blank, split), synthetic.generate("mqar", random, split)
        assert np.array_equal(a.targets, b.targets) and np.array_equal(a.offsets, b.offsets)
        was_blank = a.ids == synthetic.MQAR_BLANK
        assert np.array_equal(a.ids[~was_blank], b.ids[~was_blank])
        assert ((b.ids[was_blank] >= filler0) & (b.ids[was_blank] < filler0 + 30)).all()
        assert len(np.unique(b.ids[was_blank])) == 30  # every filler token drawn
        check_rows(b, 40)
        assert synthetic.no_recall_accuracy(b.ids, b.targets, b.offsets) == pytest.approx(1 / k, abs=1e-4)


def gaps(cfg: SyntheticConfig, split: str = "test") -> np.ndarray:
    """Every query's gap after the last pair: 1 = right after it."""
    data = synthetic.generate("mqar", cfg, split)
    out = []
    for _, tgt in rows(data):
        queries = np.flatnonzero(tgt >= 0)
        out += (queries - 2 * len(queries) + 1).tolist()
    return np.array(out)


def test_power_law_gaps_fall_off_with_the_gap_and_power_one_is_uniform():
    base = dict(seq_len=264, num_pairs=4, vocab=40, n_train=10, n_val=10, n_test=4000, query_gap="power_law")
    power = gaps(SyntheticConfig(**base, gap_power=0.01))  # 256 slots after the 8 pair tokens
    edges = 2 ** np.arange(9)  # gap bins [1, 2), [2, 4), ... [128, 256]
    counts = np.histogram(power, bins=[*edges[:-1], 257])[0]
    density = counts / np.diff([*edges[:-1], 257])
    assert power.min() >= 1 and power.max() <= 256
    assert (np.diff(density) < 0).all(), density  # fewer queries per slot the further from the pairs
    assert (power <= 16).mean() > 0.4  # uniform: 16 / 256 = 0.06
    flat = gaps(SyntheticConfig(**base, gap_power=1.0))
    flat_density = np.histogram(flat, bins=[1, 65, 129, 193, 257])[0]
    assert flat_density.min() > 0.9 * flat_density.max()  # four equal ranges, about equal counts
    data = synthetic.generate("mqar", SyntheticConfig(**base, filler="random"), "test")
    check_rows(data, 40)
    assert synthetic.no_recall_accuracy(data.ids, data.targets, data.offsets) == pytest.approx(0.25, abs=1e-4)


def test_pairs_scale_with_length_and_train_mixes_lengths():
    cfg = SyntheticConfig(seq_len=32, num_pairs=2, vocab=64, n_train=300, n_val=30, n_test=50, scale_pairs=True,
                          train_lengths=[32, 64, 128], extrapolate=[2, 4], filler="random", filler_vocab=8,
                          query_gap="power_law")
    assert synthetic.split_lengths(cfg) == {"train": 128, "val": 128, "test": 32, "test_2x": 64, "test_4x": 128}
    for split, length, k in (("test", 32, 2), ("test_2x", 64, 4), ("test_4x", 128, 8)):
        data = synthetic.generate("mqar", cfg, split)
        assert (np.diff(data.offsets) == length).all() and ((data.targets >= 0).sum() == 50 * k)
        check_rows(data, 64)
        assert synthetic.no_recall_accuracy(data.ids, data.targets, data.offsets) == pytest.approx(1 / k, abs=1e-4)
    train = synthetic.generate("mqar", cfg, "train")
    lengths = np.diff(train.offsets)
    assert sorted(np.unique(lengths, return_counts=True)[1]) == [100, 100, 100]
    assert len(set(lengths[:20].tolist())) == 3  # shuffled, not in blocks
    per_row = [(int((t >= 0).sum()), len(t)) for _, t in rows(train)]
    assert all(k == length // 16 for k, length in per_row)  # 2 pairs per 32 tokens
    check_rows(train, 64)
    # each row's queries score 1/k: the split's floor is rows / queries
    assert synthetic.no_recall_accuracy(train.ids, train.targets, train.offsets) == pytest.approx(300 / 1400, abs=1e-4)


def test_bad_mqar_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="train_pairs and train_lengths both mix"):
        synthetic.generate("mqar", SyntheticConfig(train_pairs=[2], train_lengths=[128]), "train")
    with pytest.raises(ConfigError, match="scale_pairs puts 32 pairs in test_4x .* raise task.synthetic.vocab to at least 64"):
        synthetic.generate("mqar", SyntheticConfig(vocab=40, num_pairs=8, scale_pairs=True), "test_4x")
    with pytest.raises(ConfigError, match="task.synthetic.filler is MQAR's"):
        synthetic.generate("selcopy", SyntheticConfig(filler="random"), "test")
    with pytest.raises(ConfigError, match="task.synthetic.query_gap='zipf' is not valid; choose one of: uniform, power_law"):
        load(["task=mqar", "task.synthetic.query_gap=zipf"], model=False)
    with pytest.raises(ConfigError, match="train_lengths=\\[64, 512\\] is longer than task.max_len=64"):
        load(["task=mqar", "task.synthetic.train_lengths=[64,512]"], model=False)
    with pytest.raises(ConfigError, match="fillr"):
        load(["task=mqar", "task.synthetic.fillr=random"], model=False)  # unknown keys stay rejected
    with pytest.raises(ConfigError, match="gap_power=0.0 is out of range"):
        load(["task=mqar", "task.synthetic.gap_power=0"], model=False)
