"""How much context does each language model use? Perplexity by context length, and the length after
which more context stops helping.

After Khandelwal et al. (2018, "Sharp nearby, fuzzy far away"), who found that LSTM language models on
PTB and Wikitext-2 use about 200 tokens of context. The evaluate stage scores the *same* test tokens once
per context bucket (lo, hi] of the shared log-spaced edges (pipeline/measure/context_probe.py:
examples/seed<k>.context.npz), so a difference between buckets is the context's, not the token mix's.
Between consecutive buckets b and b+1 the gain is the drop in mean NLL (nats per token); its 95%
interval comes from a cluster bootstrap over blocks of consecutive targets (and seeds), pairing both
buckets token by token. The gains stop by the upper edge of the last bucket that is significantly
better than the one before it; beyond it the interval of the gain includes 0 (or the gain is negative),
so more context is not shown to help: an upper bound at bucket resolution. Runs evaluated before the
probe existed fall back to position within the test windows (different tokens per position).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from pipeline.report.significance import outcomes_of

N_BOOT = 1000
LEVEL = 0.95


def _window_sums(o: dict, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """[clusters, buckets] sums of NLL and of weights; a cluster is one (seed, test window)."""
    values = np.atleast_2d(o["values"])  # [seeds, n]
    groups = np.unique(o["group"], return_inverse=True)[1]
    n_groups = groups.max() + 1
    index = groups * n_buckets + o["bucket"].astype(np.int64)
    sums = [np.bincount(index, weights=v * o["weights"], minlength=n_groups * n_buckets) for v in values]
    weights = np.bincount(index, weights=o["weights"], minlength=n_groups * n_buckets)
    return (np.concatenate(sums).reshape(-1, n_buckets),
            np.tile(weights.reshape(-1, n_buckets), (len(values), 1)))


def context_use(o: dict, edges: list[int], seed: int = 0) -> dict:
    """{ppl per bucket, gain per step with its interval, used_up_to: a position or None}."""
    n = len(edges)
    sums, weights = _window_sums(o, n)
    total = weights.sum(0)
    mean = np.where(total > 0, sums.sum(0) / np.maximum(total, 1e-12), np.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(N_BOOT, len(sums)))
    boot_sum = np.stack([sums[p].sum(0) for p in picks])
    boot_w = np.stack([weights[p].sum(0) for p in picks])
    boot_mean = boot_sum / np.maximum(boot_w, 1e-12)
    steps, used = [], None
    for b in range(n - 1):
        if total[b] == 0 or total[b + 1] == 0:
            continue
        gain = boot_mean[:, b] - boot_mean[:, b + 1]
        lo, hi = np.percentile(gain, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
        helps = bool(lo > 0)
        steps.append({"from": edges[b], "to": edges[b + 1], "gain": float(mean[b] - mean[b + 1]),
                      "lo": float(lo), "hi": float(hi), "helps": helps})
    for step in steps:  # the first step that no longer helps: gains have stopped by its lower bucket's edge
        if not step["helps"]:
            used = step["from"]
            break
    last = max((b for b in range(n) if total[b] > 0), default=None)
    return {"ppl": [float(np.exp(m)) if np.isfinite(m) else None for m in mean], "steps": steps,
            "used_up_to": used, "max_position": edges[last] if last is not None else None}


def rows(results: list[dict]) -> list[dict]:
    """One row per language-model run with outcomes: its context use."""
    out = []
    for r in results:
        if r.get("task_kind") != "lm" or r.get("metric") != "ppl":
            continue
        paired = outcomes_of(r, "context")
        o = paired if paired is not None else outcomes_of(r)
        if o is None:
            continue
        edges = list(r["buckets"]["edges"])
        out.append({"task": r["task"], "model": r["model"], "edges": edges, "paired": paired is not None,
                    **context_use(o, edges)})
    return out


COLUMNS = ["task", "model", "position_hi", "ppl", "gain_from_previous", "gain_lo", "gain_hi", "used_up_to",
           "max_position", "paired"]


def _fmt_gain(row) -> str:
    if row["gain_from_previous"] is None or row["gain_from_previous"] != row["gain_from_previous"]:
        return "—"
    mark = " ✓" if row["gain_lo"] > 0 else ""
    return f"{row['gain_from_previous']:+.3f} [{row['gain_lo']:+.3f}, {row['gain_hi']:+.3f}]{mark}"


def markdown(task: str, table) -> list[str]:
    """The section from reports/context_use.csv's rows of one task (a DataFrame with COLUMNS)."""
    mine = table[table["task"] == task] if len(table) else table
    if not len(mine):
        return []
    models = list(dict.fromkeys(mine["model"]))
    edges = [int(e) for e in mine[mine["model"] == models[0]]["position_hi"]]
    lows = [1] + [e + 1 for e in edges[:-1]]
    header = ["model", *[f"{lo}–{hi}" for lo, hi in zip(lows, edges)], "gains from context stop by"]
    paired = bool(mine["paired"].all())
    how = ("Test perplexity of the same test tokens predicted from each amount of context (tokens of history, "
           "log-spaced buckets), and the context length by which gains stop: the upper edge of the last bucket "
           "significantly better than the one before it (95% cluster bootstrap over blocks of consecutive tokens, "
           "paired token by token; an upper bound at bucket resolution)." if paired else
           "Test perplexity by context position (how many tokens precede the scored one in its window; different "
           "tokens at each position), and the position by which gains from more context stop: the upper edge of "
           "the last bucket significantly better than the one before it (95% cluster bootstrap over test windows; "
           "an upper bound at bucket resolution).")
    lines = ["### How much context does each model use?", "",
             how + " Khandelwal et al. (2018) found LSTM language models use about 200 tokens of context on PTB.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        rows = mine[mine["model"] == model]
        used = rows["used_up_to"].iloc[0]
        if used != used or used is None:
            used = f"all {int(rows['max_position'].iloc[0])} (still helping)"
        elif int(used) == edges[0]:  # not even the first step is resolved: no finding, not "uses 16 tokens"
            used = (f"≤ {edges[0]} (no gain resolved beyond)" if paired else
                    "no gain resolved (intervals too wide)")
        else:
            used = str(int(used))
        cells = [f"{p:.1f}" if p == p and p is not None else "—" for p in rows["ppl"]]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {used} |")
    steps = [f"{lo - 1}→{hi}" for lo, hi in zip(lows[1:], edges[1:])]
    lines += ["", "Change in NLL from the previous bucket (nats per token; positive: more context helped; ✓ its "
              "95% interval excludes 0):", "", "| model | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    for model in models:
        rows = mine[mine["model"] == model].iloc[1:]
        lines.append(f"| {model} | " + " | ".join(_fmt_gain(r) for _, r in rows.iterrows()) + " |")
    return lines + [""]


def csv_rows(context_rows: list[dict]) -> list[dict]:
    """Plain numbers for reports/context_use.csv: one row per (task, model, bucket)."""
    out = []
    for r in context_rows:
        steps = {s["to"]: s for s in r["steps"]}
        for edge, ppl in zip(r["edges"], r["ppl"]):
            s: Optional[dict] = steps.get(edge)
            out.append({"task": r["task"], "model": r["model"], "position_hi": edge, "ppl": ppl,
                        "gain_from_previous": s["gain"] if s else None, "gain_lo": s["lo"] if s else None,
                        "gain_hi": s["hi"] if s else None, "used_up_to": r["used_up_to"], "paired": r.get("paired", False),
                        "max_position": r["max_position"]})
    return out
