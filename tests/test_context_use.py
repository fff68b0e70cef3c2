"""The "how much context does each model use" analysis on planted per-token outcomes with a known answer."""
import numpy as np
import pandas as pd

from pipeline import buckets
from pipeline.report import context_use


def planted(helps_until: int, max_len: int = 512, windows: int = 120, seed: int = 0) -> dict:
    """NLL falls with log(position) up to `helps_until` and is flat after it, plus token noise."""
    rng = np.random.default_rng(seed)
    pos = np.tile(np.arange(1, max_len + 1), windows)
    group = np.repeat(np.arange(windows), max_len)
    edges = buckets.edges(max_len)
    nll = 6.0 - 0.4 * np.log2(np.minimum(pos, helps_until)) + rng.normal(0, 1.0, pos.size)
    bucket = np.searchsorted(np.array(edges), pos)  # (e_{i-1}, e_i] -> i
    return {"values": nll.astype(np.float32), "weights": np.ones(pos.size, np.float32),
            "bucket": bucket.astype(np.int16), "group": group.astype(np.int32)}, edges


def test_the_position_where_more_context_stops_helping_is_found():
    # Bucket means: (h, 2h] still beats (h/2, h], whose tokens had less context on average, so a knee at h
    # shows as "gains stop by 2h": an upper bound at bucket resolution.
    for helps_until, expected in ((64, 128), (128, 256)):
        o, edges = planted(helps_until)
        found = context_use.context_use(o, edges)
        assert found["used_up_to"] == expected, (helps_until, found["steps"])
        assert all(s["helps"] for s in found["steps"] if s["to"] <= helps_until)
        assert found["ppl"][0] > found["ppl"][-1]


def test_context_that_helps_to_the_end_says_so_and_the_table_renders():
    o, edges = planted(10_000, max_len=256)
    found = context_use.context_use(o, edges)
    assert found["used_up_to"] is None and found["max_position"] == 256
    rows = [{"task": "ptb", "model": "lstm", "edges": edges, **found}]
    table = pd.DataFrame(context_use.csv_rows(rows), columns=context_use.COLUMNS)
    text = "\n".join(context_use.markdown("ptb", table))
    assert "| lstm |" in text and "all 256 (still helping)" in text and "128→256" in text
    assert context_use.markdown("rt", table) == []
