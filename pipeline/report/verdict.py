"""The report's first section: which architecture for which lengths, and the seeds' claims measured.

Reads the evaluate stage's eval.json files (quality per length bucket) and the benchmark stage's
results/bench/<model>.json files (speed, memory and decoding per length), and builds:

    verdict       per length: the most accurate model of each task, the fastest to train, the fastest
                  at inference, the lowest decode latency and the leanest, each with its margin over
                  the runner-up; a bucket with fewer than `min_examples` examples names no winner
    complexity    per model: the family's claimed cost beside the fitted exponents with 95% intervals
                  (train time both at constant tokens per step and at a fixed batch of 1) and a verdict; maximum path length beside the measured receptive field; backbone
                  memory at 1K/4K/8K; MFU
    crossover     per model: the length from which it is faster / leaner than the Transformer

No torch here: the report runs where only the results exist.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import pandas as pd

from pipeline.artifacts import ArtifactError, BenchResult
from pipeline.measure import scaling
from pipeline.report.recall_claims import recall_claims_md
from pipeline.report.verdict_lengths import bucket_verdict_md, bucket_verdict_rows
from pipeline.report.verdict_lengths import SPEED_COLUMNS, bucket_label, cell_log_sd, verdict_rows  # noqa: F401
from pipeline.report.format import MIN_BUCKET_EXAMPLES, _is_nan, fmt_mb, fmt_si, md_table

REFERENCE_MODEL = "transformer"  # crossovers are against the quadratic baseline
MEMORY_AT = (1024, 4096, 8192)
# (column, cell key, lower is better, label)

class BenchResultError(ArtifactError):
    pass


def load_bench(bench_dir: Path, models: Optional[list[str]] = None) -> tuple[list[dict], list[str]]:
    """(results, missing models) of <bench_dir>/<model>.json for `models` (default: every file)."""
    bench_dir = Path(bench_dir)
    names = models if models is not None else sorted(p.stem for p in bench_dir.glob("*.json"))
    out, missing = [], []
    for name in names:
        path = bench_dir / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        rerun = f"`dvc repro -s benchmark@{name}`"
        try:
            out.append(BenchResult.read(path, rerun).to_dict())
        except ArtifactError as e:
            raise BenchResultError(str(e)) from None
    return out, missing


# ----------------------------------------------------------------------------- long tables


def bench_table(bench: list[dict]) -> pd.DataFrame:
    """One row per (model, length): the sweep's cells plus decode latency at that context."""
    rows = []
    for r in bench:
        decode = {c["context"]: c for c in r["decode"].get("cells", [])}
        for c in r["cells"]:
            d = decode.get(c["length"], {})
            rows.append({"model": r["model"], "length": c["length"], "batch": c.get("batch"), "status": c["status"],
                         **{k: c.get(k) for k in ("train_s", "train_iqr_s", "train_tokens_per_s", "train_s_batch1", "infer_s",
                                                  "infer_iqr_s", "infer_tokens_per_s", "train_peak_mb",
                                                  "infer_peak_mb", "infer_backbone_peak_mb",
                                                  "infer_backbone_eager_peak_mb", "forward_flops_per_token", "train_mfu", "infer_mfu")},
                         "decode_latency_ms": d.get("latency_ms") if d.get("status") == "ok" else None,
                         "attention_kernel": (c.get("attention") or {}).get("summary")})
    columns = ["model", "length", "batch", "status", "train_s", "train_iqr_s", "train_tokens_per_s", "train_s_batch1", "infer_s",
               "infer_iqr_s", "infer_tokens_per_s", "train_peak_mb", "infer_peak_mb", "infer_backbone_eager_peak_mb",
               "infer_backbone_peak_mb", "forward_flops_per_token", "train_mfu", "infer_mfu", "decode_latency_ms",
               "attention_kernel"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- claims


def _fmt_fit(entry: Optional[dict]) -> str:
    """'1.62 [1.41, 1.83]; 1.89 at 8K': the fitted exponent, its interval, and the last local slope."""
    fit = (entry or {}).get("fit")
    if not fit:
        return "—"
    interval = "" if fit["lo"] is None else f" [{fit['lo']:.2f}, {fit['hi']:.2f}]"
    local = (entry or {}).get("local") or []
    last = f"; {local[-1]['exponent']:.2f} at {_k(local[-1]['length'])}" if local else ""
    return f"{fit['exponent']:.2f}{interval}{last}"


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _fmt_claim(text: Optional[str], exponent: Optional[float]) -> str:
    if text is None:
        return "—"
    return text if exponent is None else f"{text} (n^{exponent:g})"


def _receptive_fields(results: list[dict]) -> dict[str, str]:
    """Measured receptive field per model, from any evaluated task (the longest measurement)."""
    out: dict[str, tuple[int, str]] = {}
    for r in results:
        rf = r.get("receptive_field")
        if not isinstance(rf, dict):
            continue
        at = int(rf.get("measured_at") or 0)
        text = f"full ({at})" if rf.get("full") else f"{rf.get('tokens')} of {at}"
        if r["model"] not in out or at > out[r["model"]][0]:
            out[r["model"]] = (at, text)
    return {m: t for m, (_, t) in out.items()}


def _memory_at(r: dict, n: int) -> str:
    cell = next((c for c in r["cells"] if c["length"] == n), None)
    if cell is None:
        return "—"
    if cell["status"] != "ok":
        return cell["status"].split(":")[0]
    return fmt_mb(cell["infer_backbone_peak_mb"] / cell["batch"])


def _rejudge(r: dict) -> None:
    """Every fit's verdict by this code's rules (scaling.verdict), not by those the benchmark ran with."""
    for entry in r["fits"].values():
        if entry and "claimed" in entry:
            entry["verdict"] = scaling.verdict(entry.get("fit"), entry["claimed"], local=entry.get("local"))


def _vs_flops(r: dict) -> str:
    """Train and inference time exponents against what the model's FLOP count predicts over the same lengths."""
    ok = [c for c in r["cells"] if c["status"] == "ok"]
    parts = []
    for key, label in (("train_time", "train"), ("infer_time", "infer")):
        fit = (r["fits"].get(key) or {}).get("fit")
        if fit:
            predicted = scaling.flop_exponent([c["length"] for c in ok], [c.get("forward_flops_per_token") for c in ok],
                                              *fit["lengths"])
            parts.append(f"{label}: {scaling.cost_model_verdict(fit, predicted)}")
    return "; ".join(parts) or "—"


def complexity_rows(bench: list[dict], results: list[dict]) -> pd.DataFrame:
    rf = _receptive_fields(results)
    rows = []
    for r in bench:
        _rejudge(r)
        claim = r.get("claim") or {}
        fits = r["fits"]
        ok = [c for c in r["cells"] if c["status"] == "ok"]
        mfu = max((c.get("train_mfu") or 0 for c in ok), default=float("nan"))
        rows.append({
            "model": r["model"],
            "claimed time / layer": _fmt_claim(claim.get("time"), claim.get("time_exponent")),
            "train time exponent": _fmt_fit(fits.get("train_time")),
            "train time exponent (batch 1)": _fmt_fit(fits.get("train_time_fixed_batch")),
            "infer time exponent": _fmt_fit(fits.get("infer_time")),
            "time claim": _time_claim(r),
            "time vs FLOP count": _vs_flops(r),
            "claimed memory": _fmt_claim(claim.get("memory"), claim.get("memory_exponent")),
            "memory exponent (infer, backbone)": _fmt_fit(fits.get("infer_memory")),
            "memory exponent (train step)": _fmt_fit(fits.get("train_memory")),
            "memory claim": _verdict(fits, "infer_memory", "train_memory"),
            "memory exponent (eager attention, n×n scores)": _fmt_fit(fits.get("infer_memory_eager")),
            "claimed decode / token": _fmt_claim(claim.get("decode"), claim.get("decode_exponent")),
            "decode exponent": _fmt_fit(fits.get("decode_latency")),
            "decode claim": (fits.get("decode_latency") or {}).get("verdict", "—"),
            "claimed max path": claim.get("path", "—"),
            "measured receptive field": rf.get(r["model"], "not evaluated on a task"),
            **{f"backbone MB/seq @{n // 1024}K": _memory_at(r, n) for n in MEMORY_AT},
            "best train MFU": "—" if _is_nan(mfu) else f"{mfu:.1%}",
            "parallel vs own recurrence": _speedup(r),
        })
    return pd.DataFrame(rows)


def _speedup(r: dict) -> str:
    """The parallel form's speed-up over token-by-token decoding, at the longest length measured."""
    ratios = r["decode"].get("parallel_speedup") or []
    return "—" if not ratios else f"{ratios[-1]['speedup']:.1f}× at {ratios[-1]['length']}"


def _verdict(fits: dict, *keys: str) -> str:
    """One word for a claim checked by two fits: both hold, both fail, or which one failed."""
    verdicts = [(fits.get(k) or {}).get("verdict", "not measurable here") for k in keys]
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return "; ".join(f"{k.split('_')[0]}: {v}" for k, v in zip(keys, verdicts))


def _time_claim(r: dict) -> str:
    """The time claim from train (at constant tokens per step and at batch 1) and inference. Where the
    two train series disagree both are named, with the batch range of the constant-token fit: e.g.
    'train: holds at fixed batch (1.08); 1.21 at constant tokens per step (batch 8→1); infer: ...'.
    Results without the fixed-batch series (older bench JSON) get the constant-token verdict alone."""
    fits = r["fits"]
    fixed, train = fits.get("train_time_fixed_batch") or {}, fits.get("train_time") or {}
    if not fixed.get("fit"):
        return _verdict(fits, "train_time", "infer_time")
    tv, fv = train.get("verdict", "not measurable here"), fixed["verdict"]
    infer = (fits.get("infer_time") or {}).get("verdict", "not measurable here")
    exponent = f"{train['fit']['exponent']:.2f}" if train.get("fit") else "—"
    batches = [c["batch"] for n in (train.get("fit") or {}).get("lengths", [])
               for c in r["cells"] if c["length"] == n]
    span = f" (batch {batches[0]}→{batches[-1]})" if len(batches) == 2 and batches[0] != batches[1] else ""
    if tv.split(" (")[0] == fv.split(" (")[0]:
        text = tv
    elif fv == "holds":
        text = f"holds at fixed batch ({fixed['fit']['exponent']:.2f}); {exponent} at constant tokens per step{span}"
    else:
        text = f"{tv} at constant tokens per step{span}; {fv} at fixed batch ({fixed['fit']['exponent']:.2f})"
    return text if text == infer else f"train: {text}; infer: {infer}"


CROSSOVER_COLUMNS = (("train faster", "train_s"), ("inference faster", "infer_s"), ("decode faster", "decode"),
                     ("leaner (infer, backbone)", "infer_backbone_peak_mb"))


def crossovers(bench: list[dict], reference: str = REFERENCE_MODEL) -> dict[str, dict[str, dict]]:
    """{model: {column: scaling.crossover(...)}} against the reference's per-token costs, judged on the
    ratio's 95% interval at each length."""
    ref = next((r for r in bench if r["model"] == reference), None)
    if ref is None:
        return {}

    def series(r: dict, key: str) -> dict[int, tuple[float, float]]:
        if key == "decode":
            return {c["context"]: (c["latency_ms"], cell_log_sd(c, key))
                    for c in r["decode"].get("cells", []) if c["status"] == "ok"}
        return {c["length"]: (c[key] / c["tokens"] if key.endswith("_s") else c[key] / c["batch"], cell_log_sd(c, key))
                for c in r["cells"] if c["status"] == "ok"}

    out = {}
    for r in bench:
        if r["model"] == reference:
            continue
        out[r["model"]] = {}
        for label, key in CROSSOVER_COLUMNS:
            mine, theirs = series(r, key), series(ref, key)
            common = sorted(set(mine) & set(theirs))
            out[r["model"]][label] = scaling.crossover(
                common, [mine[n][0] for n in common], [theirs[n][0] for n in common],
                [mine[n][1] for n in common], [theirs[n][1] for n in common])
    return out


def crossover_rows(bench: list[dict], reference: str = REFERENCE_MODEL) -> pd.DataFrame:
    """Per model: from which length it is faster / leaner than the reference (per-token costs), named
    only where the ratio's 95% interval excludes 1 on both sides of it (scaling.crossover)."""
    found = crossovers(bench, reference)
    if not found:
        return pd.DataFrame()
    return pd.DataFrame([{"model": m, **{label: _fmt_crossover(c) for label, c in row.items()}}
                         for m, row in found.items()])


def _fmt_crossover(cross: dict) -> str:
    noisy = cross.get("noisy") or []
    doubling = len(noisy) > 2 and all(b == 2 * a for a, b in zip(noisy, noisy[1:]))
    within = "" if not noisy else f"within noise at n = {noisy[0]}–{noisy[-1]}" if doubling \
        else f"within noise at n = {', '.join(map(str, noisy))}"
    kind = cross["kind"]
    if kind == "between":
        return f"between n = {cross['length']} and {cross['upper']} ({within})"
    if kind == "unresolved":
        cheaper = f"cheaper from n = {cross['length']}; " if cross["length"] else ""
        return f"no crossover resolved ({cheaper}{within})"
    text = {"always": "at every length", "never": "never within the sweep",
            "not measurable": "not measured"}.get(kind, f"from n = {cross['length']}")
    return text


# ----------------------------------------------------------------------------- markdown


def verdict_md(results: list[dict], bench: list[dict], missing: list[str], plots: dict[str, Path], out_dir: Path,
               min_examples: int = MIN_BUCKET_EXAMPLES) -> list[str]:
    import os

    out = ["## Which architecture for my lengths?", ""]
    env = next((r.get("env") for r in bench if r.get("env")), {}) or {}
    if bench:
        b = (bench[0].get("config") or {}).get("bench", {})
        out += [f"Quality comes from each task's test set, bucketed by length (the bucket ending at n); speed, "
                f"memory and decoding from the benchmark stage: every model at the profile's budget "
                f"({fmt_si(bench[0]['params']['backbone'])} backbone parameters for {bench[0]['model']}), "
                f"{b.get('tokens_per_batch', '?')} tokens per batch at every length n, fp32, "
                f"{env.get('device', '?')} ({env.get('cpu', '?')}, {env.get('threads', '?')} threads). "
                f"Margins: quality as the difference to the runner-up, speed and memory as the ratio. "
                f"A quality winner is named only when a paired bootstrap on that bucket's test examples, with "
                f"Welch's t on the seed means when both have several seeds (95%), says it beats the runner-up "
                f"('suggested, one seed' when only one seed was trained); otherwise the cell reads `A ≈ B: tied`, "
                f"or 'unresolved' where the test finds no difference but the two intervals are apart. "
                f"A bucket with fewer than {min_examples} test examples names no winner.", ""]
    if missing:
        out += [f"No benchmark result for: {', '.join(missing)} (run `dvc repro benchmark@<model>`).", ""]
    rows = verdict_rows(results, bench, min_examples)
    if len(rows):
        lengths = list(rows["length"])
        keep = [c for c in rows.columns if c != "length" and (rows[c] != "").any()]
        table = [[bucket_label(n, lengths), *[row[c] or "—" for c in keep]] for n, row in zip(lengths, rows.to_dict("records"))]
        out += [md_table(["length", *keep], table, align="l" * (len(keep) + 1)), ""]
    out += bucket_verdict_md(bucket_verdict_rows(results, bench, min_examples))
    for key, path in sorted(plots.items()):  # one panel per bucket: the table above, drawn
        if key.startswith("quality_vs_throughput_"):
            out += [f"![{key}]({Path(os.path.relpath(path, out_dir)).as_posix()})", ""]
    if bench:
        b = (bench[0].get("config") or {}).get("bench", {})
        out += ["### The seeds' claims, measured", "",
                "Exponent k of cost ∝ n^k, fitted on log-log axes over the upper sweep "
                f"(n ≥ {b.get('fit_min_len', '?')}; decode from context "
                f"{b.get('decode_fit_min_len') or b.get('fit_min_len', '?')}) with a 95% interval; "
                "time and memory are per sequence of length n (a linear-time model: k ≈ 1, quadratic: k ≈ 2), "
                "decode is the latency of one token at context n (KV cache: k ≈ 1, fixed state: k ≈ 0). "
                f"A claim holds when the whole 95% interval lies within ± {scaling.CLAIM_TOLERANCE} of it and "
                "excludes the exponent it is meant to rule out (decode: 1 against a fixed state's 0; time and "
                "memory: 2 against a linear 1, 1 against a quadratic 2); it does not hold when the whole interval "
                f"lies outside that band; a fit on fewer than {scaling.MIN_POINTS} lengths is "
                "'inconclusive (n points)'; 'approaching' when the local slopes move toward the claim as n grows; "
                "otherwise 'inconclusive'. 'time vs FLOP count' sets the train and inference exponents beside "
                "the exponent the model's own forward FLOP count (per token, times n) has over the same lengths: "
                "a Transformer whose attention (about 2·n²·d FLOPs per causal layer) has not yet overtaken its "
                "projections and MLP (about 24·n·d²) should measure between 1 and 2, not 2. The count covers "
                "matmuls, convolutions and attention, not FFTs: S4D's FFT convolution (n log n) is missing from it. "
                "Every cell holds the same number of tokens, so the batch shrinks as n grows: a model that "
                "reads a sequence token by token (LSTM, GRU) cannot use the time axis for parallelism and "
                "loses the batch axis too, so its wall-clock exponent exceeds its FLOP exponent of 1. "
                "The column 'train time exponent (batch 1)' separates the two: the same train step timed on "
                "one sequence at every n of the fit, so only the length changes; where the two train series "
                "disagree, the time claim names both (the constant-token one with its batch range). "
                "Maximum path length is set beside the receptive field measured on the trained backbones.", "",
                ]
        claims = complexity_rows(bench, results)
        split = list(claims.columns).index("claimed decode / token")
        out += [_df_md(claims.iloc[:, :split]), "",
                "Decoding, paths and memory: the latency of one generated token (batch 1) at context n; how much "
                "faster the parallel forward reads a sequence than the model's own token-by-token recurrence; "
                "backbone inference memory per sequence; the best train-step MFU (achieved FLOP/s over this "
                "machine's measured fp32 matmul peak).", "",
                _df_md(claims.iloc[:, [0, *range(split, len(claims.columns))]]), ""]
        cross = crossover_rows(bench)
        if len(cross):
            out += [f"### Crossover lengths against the {REFERENCE_MODEL}", "",
                    "Per token: the shortest length from which a model is faster (or leaner) than the "
                    f"{REFERENCE_MODEL} at every longer measured length, named only where the 95% interval of "
                    "the cost ratio excludes 1 on both sides of it: 'between n = a and b' when the ratios in "
                    "between are within noise, 'no crossover resolved' when no such length exists. A time ratio's "
                    "interval joins each cell's own spread (median and IQR of its timed runs) with the spread of "
                    f"one cell's time between two benchmark processes on the same host (sd {scaling.TIMING_SD:g} "
                    "in log: docs/verdict-stability.md); peak memory is exact.", "", _df_md(cross), ""]
        for kind in ("time_vs_length", "memory_vs_length", "decode_vs_context"):
            if plots.get(kind):
                out += [f"![{kind}]({Path(os.path.relpath(plots[kind], out_dir)).as_posix()})", ""]
    out += recall_claims_md(results)
    for key, path in sorted(plots.items()):
        if key.startswith("pareto_"):
            out += [f"![{key}]({Path(os.path.relpath(path, out_dir)).as_posix()})", ""]
    return out


def _df_md(df: pd.DataFrame) -> str:
    return md_table(list(df.columns), [[str(v) for v in row] for row in df.itertuples(index=False)],
                    align="l" * len(df.columns))


def headline(bench: list[dict]) -> dict[str, float]:
    """Flat benchmark numbers for summary.json: exponents per model."""
    out = {}
    for r in bench:
        for key, entry in r["fits"].items():
            fit = entry.get("fit")
            if fit and not math.isnan(fit["exponent"]):
                out[f"bench/{r['model']}/{key}_exponent"] = round(float(fit["exponent"]), 4)
    return out
