"""report.md: the title and environment line, "How to read this", and one section per task.

A task's section holds the summary table, translation details (sacreBLEU signature, decoding,
sample translations), the length-extrapolation table, the per-bucket table and the speed and
memory tables, with the plots embedded by relative path. The verdict section (pipeline.report.
verdict) is passed in and placed before "How to read this".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from pipeline.report import context_use
from pipeline.report.significance import ESTIMAND
from pipeline.report.format import (SAMPLES_PER_MODEL, _is_nan, _num, fmt_mb, fmt_metric, fmt_receptive_field, fmt_si,
                                    md_table, md_text)
from pipeline.report.tables import AT_CHANCE, CHANCE_ABS_MARGIN, CHANCE_REL_MARGIN, trained_lengths


def render_markdown(results: list[dict], tables: dict[str, pd.DataFrame], plots: dict[str, dict[str, Path]],
                    out_dir: Path, experiment: str = "", verdict_section: Optional[list[str]] = None) -> str:
    title = f"# seqarena report{f' — {experiment}' if experiment else ''}"
    # no generation time: the same results give a byte-identical report (DVC hashes it)
    parts = [title, "", f"Generated from {len(results)} evaluated runs. {_env_line(results)}", "",
             *(verdict_section or []), _how_to_read(tables), ""]
    for task in tables["summary"]["task"].unique():
        task_results = [r for r in results if r["task"] == task]
        parts += _task_section(task, task_results, tables, plots.get(task, {}), out_dir)
    return "\n".join(parts).rstrip() + "\n"


def _env_line(results: list[dict]) -> str:
    """Env fingerprint; several values are listed (mixed runs are worth noticing)."""
    def values(key: str) -> str:
        found = sorted({str((r.get("env") or {}).get(key)) for r in results if (r.get("env") or {}).get(key)})
        return ", ".join(found) if found else "unknown"

    cpu = values("cpu")
    return (f"Speed and memory measured with torch {values('torch')} · device {values('device')}"
            + (f" · CPU {cpu}" if cpu != "unknown" else "") + (f" · threads {values('threads')}"
                                                               if values("threads") != "unknown" else "") + ".")


def _how_to_read(tables: dict[str, pd.DataFrame]) -> str:
    speed = tables["speed"]
    bsz = ", ".join(sorted({str(int(b)) for b in speed["batch_size"].dropna()})) or "?"
    dev = ", ".join(sorted({str(d) for d in speed["device"].dropna()})) or "?"
    return (
        "## How to read this\n\n"
        "Metrics are on the test split, mean ± sample std over training seeds (n = number of seeds). "
        f"{ESTIMAND} **vs next** compares a model with the next one on the same test examples: a paired bootstrap, "
        "with Welch's t on the seed means on top when both have two or more seeds; `better` when the 95% interval "
        "of the difference excludes 0, `suggested (one seed)` when it does so on one seed (seed variation not "
        "measured), `unresolved` when the test does not separate them although their intervals are apart, "
        "else `tied`. "
        "**Buckets** split the test set by length: for language modelling a bucket is a range of "
        "*context positions* (how many tokens the model has seen before predicting), for classification "
        "it is the number of *document tokens the model saw* (after truncation to the task's length: the table "
        "header says how many test documents were cut), for translation the source length; the `examples` row gives how many predictions (LM: tokens, "
        "classification: documents) each cell averages over, and `—` means no examples. "
        "The **baseline** is a chance-level reference computed from the data (unigram perplexity for LM, "
        f"majority-class accuracy for classification). **{AT_CHANCE}** marks models not clearly better than it: "
        f"for lower-is-better metrics mean ≥ {1 - CHANCE_REL_MARGIN:.1f} × baseline (less than "
        f"{CHANCE_REL_MARGIN:.0%} better); for higher-is-better metrics mean ≤ baseline + "
        f"{CHANCE_ABS_MARGIN:g} (on a 0–1 scale; + {CHANCE_ABS_MARGIN * 100:g} points for 0–100 metrics). "
        "Backbone params exclude embeddings and the output head (which depend on the vocabulary); the "
        "parameter budget matches backbone params (`model.budget_scope: backbone`, the default) or total params "
        "(`model.budget_scope=total`: embeddings and heads too), as each run's sizing in eval.json says; "
        "FLOPs/token is the forward pass at the task's full length. "
        "**Receptive field** is how many input positions measurably influence an output, measured on the "
        "trained backbone at the length in brackets (`full` = all of them). "
        "**Translation** is scored on the decoded test set with sacreBLEU (corpus BLEU and chrF, 0–100, "
        "signature given per task); its baseline is the BLEU of copying the source. "
        "**Length extrapolation** (synthetic tasks) evaluates models trained at one length on test sets "
        "generated at 2× and 4× that length, without truncation. "
        f"**Speed** is inference throughput (tokens/s) of a forward pass at batch size {bsz} on {dev}, "
        "median over repeats; **memory** is the peak of live tensor bytes on CPU or max allocated memory on CUDA "
        "during that forward pass; `—` means not measured (out of memory or skipped). "
        "Train tokens/s is one training step (forward, loss, backward, AdamW) at the task's batch size and "
        "full length, median over repeats. Speed and memory come from the measure stage (speed.json), which "
        "keeps the numbers of the machine that measured them until the checkpoint or the code changes: "
        "`dvc repro -f -s measure@<model>-<task>` measures on yours."
    )


def _data_line(data: Optional[dict]) -> str:
    """The test split's size and what tokenize did about duplicate texts (eval.json `data`)."""
    if not data:
        return ""
    parts = []
    if (data.get("test_examples") or 0) > 1:  # an LM's test split is one stream: its count says nothing
        parts.append(f"{data['test_examples']:,} test examples")
    if data.get("duplicates_dropped") is not None:
        parts.append(f"{data['duplicates_dropped']:,} duplicate texts (same text up to case and spacing) dropped "
                     "before splitting")
    if data.get("repeats_moved_to_train") is not None:
        parts.append(f"{data['repeats_moved_to_train']:,} val/test pairs whose source repeats in another split "
                     "moved to train")
    repeats = data.get("repeats_of_train") or {}
    if repeats:
        parts.append("texts also in train: " + ", ".join(f"{split} {n}" for split, n in repeats.items()))
    return f"Data: {'; '.join(parts)}." if parts else ""


def _task_section(task: str, results: list[dict], tables: dict[str, pd.DataFrame], plots: dict[str, Path],
                  out_dir: Path) -> list[str]:
    summary = tables["summary"][tables["summary"]["task"] == task]
    first = summary.iloc[0]
    metric, better = first["metric"], ("higher" if first["higher_is_better"] else "lower")
    out = [f"## Task `{task}` ({first['task_kind']}; {metric}, {better} is better)", ""]
    reference = next((r.get("reference") for r in results if r.get("reference")), None)
    if reference:
        out += [f"Published reference: {reference}", ""]
    if not _is_nan(first["baseline"]):
        out += [f"Chance-level baseline: {first['baseline_name']} {metric} {fmt_metric(first['baseline'])}.", ""]
    data_line = _data_line(next((r.get("data") for r in results if r.get("data")), None))
    if data_line:
        out += [data_line, ""]
    out += ["### Summary", "", _summary_md(summary), ""]
    out += _translation_md(results, list(summary["model"]))
    extrapolation = tables["extrapolation"][tables["extrapolation"]["task"] == task]
    if len(extrapolation):
        out += ["### Length extrapolation", "",
                f"Test {metric} at the lengths trained at (marked `trained`: one length, or each of a training "
                f"mixture) and on splits generated longer, evaluated untruncated "
                f"(95% intervals as in the summary):", "",
                _extrapolation_md(extrapolation, summary, trained_lengths(results[0])), ""]
        if (extrapolation["sweep"] == "pairs").any():
            out += ["### Recall vs number of key-value pairs", "",
                    f"Test {metric} of the models trained at the column marked `train` (at that length), on splits "
                    "of the same length generated with fewer and more key-value pairs "
                    "(after Zoology, Arora et al. 2023, Fig. 2: a fixed-size recurrent state must hold every pair, "
                    "attention looks them up). Up to the trained "
                    "count this measures capacity; beyond it, transfer to longer key-value lists than any seen in "
                    "training, which attention does not get for free either (Zoology trains on a mixture of counts: "
                    "`task.synthetic.train_pairs`). The floor is measured on each split: the accuracy of answering the "
                    "value seen most often, without recall (values are drawn without replacement, so it is 1/pairs).",
                    "",
                    _pairs_md(extrapolation, summary), ""]
            out += _image(plots.get("recall_vs_pairs"), f"{task} {metric} vs pairs", out_dir)
    out += [f"### {metric} per length bucket", "",
            _buckets_md(tables["buckets"][tables["buckets"]["task"] == task], summary), ""]
    out += _image(plots.get("metric_by_bucket"), f"{task} {metric} by bucket", out_dir)
    out += context_use.markdown(task, tables.get("context_use", pd.DataFrame()))
    speed = tables["speed"][tables["speed"]["task"] == task]
    if len(speed):
        out += ["### Speed & memory", "", "Inference tokens/s by sequence length:", "",
                _by_length_md(speed, summary, "infer_tokens_per_s", fmt_si), "",
                *_memory_md(speed, summary)]
        out += _image(plots.get("speed_by_length"), f"{task} speed by length", out_dir)
        out += _image(plots.get("memory_by_length"), f"{task} memory by length", out_dir)
    return out


def _image(path: Optional[Path], alt: str, out_dir: Path) -> list[str]:
    if path is None:
        return []
    return [f"![{alt}]({Path(os.path.relpath(path, out_dir)).as_posix()})", ""]


def _summary_md(summary: pd.DataFrame) -> str:
    metric = summary["metric"].iloc[0]
    with_chrf = bool(summary["chrf"].notna().any())  # translation tasks
    header = ["model", "backbone params", "total params", "FLOPs/token", "receptive field",
              f"{metric} [95% interval]", *(["chrF [95% interval]"] if with_chrf else []), "seeds",
              "baseline", "vs baseline", "train tok/s", "infer tok/s (at length)", "vs next (paired)"]
    rows = []
    for r in summary.itertuples(index=False):
        value = _with_interval(r.value, r.lo, r.hi) + ("" if _is_nan(r.std) else f" ± {fmt_metric(r.std, like=r.value)}")
        infer = "—" if r.infer_length is None or _is_nan(r.infer_length) else \
            f"{fmt_si(r.infer_tokens_per_s)} ({int(r.infer_length)})"
        rf = fmt_receptive_field(r.receptive_field, r.receptive_field_measured_at, r.receptive_field_full)
        rows.append([r.model, fmt_si(r.params_backbone), fmt_si(r.params_total), fmt_si(r.flops_per_token), rf,
                     value, *([_with_interval(r.chrf, r.chrf_lo, r.chrf_hi)] if with_chrf else []), _seeds(r.n_seeds), fmt_metric(r.baseline),
                     AT_CHANCE if r.at_chance else "", fmt_si(r.train_tokens_per_s), infer, r.vs_next or ""])
    return md_table(header, rows, align="lrrrrr" + "r" * with_chrf + "rrlrrl")


def _seeds(n: int) -> str:
    return f"{n} (test sampling only)" if n == 1 else str(n)


def _with_interval(value: Any, lo: Any, hi: Any) -> str:
    """'0.992 [0.990, 0.994]', or the value alone where there is no interval."""
    if value is None or _is_nan(value) or lo is None or _is_nan(lo):
        return fmt_metric(value)
    return f"{fmt_metric(value)} [{fmt_metric(lo, like=value)}, {fmt_metric(hi, like=value)}]"


def _translation_md(results: list[dict], models: list[str]) -> list[str]:
    """sacreBLEU signature, decoding settings and sample translations; nothing for other tasks."""
    by_model = {r["model"]: r for r in results}
    ordered = [by_model[m] for m in models if m in by_model]
    if not any(r.get("bleu_signature") or r.get("decoding") or r.get("samples") for r in ordered):
        return []
    out = [_per_model_line("sacreBLEU signature", ordered, lambda r: r.get("bleu_signature"), code=True), "",
           _per_model_line("Decoding", ordered, lambda r: fmt_decoding(r.get("decoding"))), ""]
    out += ["### Sample translations", ""]
    rows = [[r["model"], str(i + 1), md_text(s.get("source")), md_text(s.get("reference")),
             md_text(s.get("hypothesis"))]
            for r in ordered for i, s in enumerate((r.get("samples") or [])[:SAMPLES_PER_MODEL])]
    out += [md_table(["model", "#", "source", "reference", "hypothesis"], rows, align="lrlll") if rows
            else "No sample translations in eval.json.", ""]
    return out


def _per_model_line(label: str, results: list[dict], value, code: bool = False) -> str:
    """'label: v' when every model agrees (the usual case), else one 'model: v' per model."""
    shown = {r["model"]: value(r) or "—" for r in results}
    quote = (lambda v: f"`{v}`" if code and v != "—" else v)
    if len(set(shown.values())) == 1:
        return f"{label}: {quote(next(iter(shown.values())))}."
    return f"{label}: " + "; ".join(f"{m} {quote(v)}" for m, v in shown.items()) + "."


def fmt_decoding(decoding: Optional[dict]) -> Optional[str]:
    """{"beam_size": 1, "examples": 1565} -> 'greedy, 1565 test sentences'; other keys as 'key value'."""
    if not decoding:
        return None
    rest = dict(decoding)
    beam, examples = rest.pop("beam_size", None), rest.pop("examples", None)
    parts = [] if beam is None else ["greedy" if beam == 1 else f"beam search (beam {beam})"]
    parts += [] if examples is None else [f"{examples} test sentences"]
    parts += [f"{k} {v}" for k, v in rest.items()]
    return ", ".join(parts)


def _extrapolation_md(extrapolation: pd.DataFrame, summary: pd.DataFrame, trained: list[int]) -> str:
    """model x length (trained, 2x trained, ...) with 95% intervals, and an examples row."""
    length = extrapolation[extrapolation["sweep"] == "length"]
    cols = length.drop_duplicates("split")[["split", "length"]].values.tolist()
    cols.sort(key=lambda c: _num(c[1]))
    header = ["model \\ length", *[_extrapolation_label(n, trained) for _, n in cols]]
    return _sweep_md(length, summary, header, [s for s, _ in cols])


def _pairs_md(extrapolation: pd.DataFrame, summary: pd.DataFrame) -> str:
    """model x number of MQAR pairs with 95% intervals, the measured no-recall floor and examples rows."""
    pairs = extrapolation[extrapolation["sweep"] == "pairs"]
    cols = pairs.drop_duplicates("split")[["split", "num_pairs", "chance"]].values.tolist()
    cols.sort(key=lambda c: _num(c[1]))
    header = ["model \\ pairs", *[f"{int(k)} (train)" if split == "test" else str(int(k)) for split, k, _ in cols]]
    return _sweep_md(pairs, summary, header, [s for s, _, _ in cols],
                     extra=["no-recall floor (measured)", *[fmt_metric(c) for _, _, c in cols]])


def _sweep_md(rows_of: pd.DataFrame, summary: pd.DataFrame, header: list[str], splits: list[str],
              extra: Optional[list[str]] = None) -> str:
    cell = {(m, s): (v, lo, hi) for m, s, v, lo, hi in
            zip(rows_of["model"], rows_of["split"], rows_of["value"], rows_of["lo"], rows_of["hi"])}
    rows = [[m, *[_with_interval(*cell.get((m, s), (None, None, None))) for s in splits]]
            for m in summary["model"] if m in set(rows_of["model"])]
    if extra:
        rows.append(extra)
    examples = {s: sorted({str(int(e)) for e in g.dropna()}) for s, g in rows_of.groupby("split")["examples"]}
    rows.append(["examples", *["/".join(examples.get(s) or ["—"]) for s in splits]])
    return md_table(header, rows)


def _extrapolation_label(length: Any, trained: list[int]) -> str:
    """'128 (trained)' for a length the model trained at (one, or one of a mixture), '512 (2× trained)' beyond
    the longest; the split names (test_2x, ...) count from the test split, not from what was trained."""
    if _is_nan(_num(length)):
        return "?"
    n = int(length)
    if not trained:
        return str(n)
    if n in trained:
        return f"{n} (trained)"
    return f"{n} ({n / max(trained):g}× trained)" if n > max(trained) else f"{n} (shorter than trained)"


def _buckets_md(buckets: pd.DataFrame, summary: pd.DataFrame) -> str:
    labels = buckets.drop_duplicates("bucket_hi").sort_values("bucket_hi")
    cols = list(zip(labels["bucket_hi"], labels["bucket"]))
    unit = buckets["unit"].dropna()
    header = [f"model \\ {unit.iloc[0] if len(unit) else 'bucket'}", *[label for _, label in cols]]
    cell = {(m, hi): (v, lo, up) for m, hi, v, lo, up in
            zip(buckets["model"], buckets["bucket_hi"], buckets["value"], buckets["lo"], buckets["hi"])}

    def fmt(key):
        v, lo, up = cell.get(key, (None, None, None))
        return fmt_metric(v) + ("" if v is None or _is_nan(v) or lo is None or _is_nan(lo) else
                                f" [{fmt_metric(lo, like=v)}, {fmt_metric(up, like=v)}]")

    rows = [[m, *[fmt((m, hi)) for hi, _ in cols]] for m in summary["model"]]
    counts = buckets.groupby("bucket_hi")["count"].agg(lambda c: sorted(set(c)))
    if all(len(counts[hi]) == 1 for hi, _ in cols):
        rows.append(["examples", *[str(counts[hi][0]) for hi, _ in cols]])
    else:  # models evaluated on different example sets: show every model's counts
        per = {(m, hi): c for m, hi, c in zip(buckets["model"], buckets["bucket_hi"], buckets["count"])}
        rows += [[f"examples ({m})", *[str(per.get((m, hi), "—")) for hi, _ in cols]] for m in summary["model"]]
    return md_table(header, rows)


def _by_length_md(speed: pd.DataFrame, summary: pd.DataFrame, column: str, fmt) -> str:
    lengths = sorted(speed["length"].unique())
    cell = {(m, n): v for m, n, v in zip(speed["model"], speed["length"], speed[column])}
    rows = [[m, *[fmt(cell.get((m, n))) for n in lengths]] for m in summary["model"]]
    return md_table(["model \\ length", *[str(n) for n in lengths]], rows)


def _memory_md(speed: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Peak inference memory per sequence: the backbone (benchmark cell at that length) beside the whole model
    (measure stage: embedding and head included, which a large vocabulary makes dominate)."""
    batch = speed["batch_size"].dropna()
    bsz = int(batch.iloc[0]) if len(batch) else None
    per_seq = speed.assign(total=speed["peak_mem_mb"] / (bsz or float("nan")))
    if "backbone_mb_per_seq" not in per_seq or per_seq["backbone_mb_per_seq"].isna().all():
        return ["Peak memory (MB) by sequence length (whole model: embedding, backbone and head; no benchmark cell "
                "at these lengths for the backbone alone):", "", _by_length_md(speed, summary, "peak_mem_mb", fmt_mb), ""]
    lengths = sorted(speed["length"].unique())
    cell = {(m, n): (b, t) for m, n, b, t in zip(per_seq["model"], per_seq["length"], per_seq["backbone_mb_per_seq"],
                                                 per_seq["total"])}
    rows = [[m, *[" / ".join(fmt_mb(v) for v in cell.get((m, n), (None, None))) for n in lengths]]
            for m in summary["model"]]
    return ["Peak inference memory (MB per sequence) by sequence length, **backbone / whole model**: the backbone "
            "from the benchmark's cell at that length (results/bench, the same model at the profile's budget, "
            "`infer_backbone_peak_mb` over its batch; `—` where the sweep has no such length), the whole model "
            f"(embedding, backbone and LM head) from the measure stage (speed.json, batch {bsz or '?'}, divided by "
            "it). A task's vocabulary makes the embedding and head dominate the whole-model figure.", "",
            md_table(["model \\ length", *[str(n) for n in lengths]], rows), ""]
