"""Published outcomes and their re-scoring (#21.4): `python -m pipeline publish` / `rescore`
(pipeline/publish.py, pipeline/rescore.py), on the committed docs/cpu and on fixtures."""
import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import outcomes, stats
from pipeline.cli import main
from pipeline.paths import ROOT
from pipeline.publish import collapse
from pipeline.report.collect import collect
from pipeline.report.write import write_report
from test_report import EDGES, REFERENCES, make_eval, translation_eval, write_runs

PUBLISHED = ROOT / "docs" / "cpu"


def test_the_published_cpu_report_rescores_to_its_printed_numbers(capsys):
    assert main(["rescore", str(PUBLISHED)]) == 0
    out = capsys.readouterr().out
    assert "373 published numbers and verdicts re-scored from the outcomes, 0 differ" in out  # context use: 168
    size = sum(p.stat().st_size for p in (PUBLISHED / "runs").rglob("*") if p.is_file())
    assert size < 300_000  # seven runs' outcomes, collapsed per test sequence and length bucket


def test_the_published_cpu_full_report_rescores_to_its_printed_numbers(capsys):
    """docs/cpu-full: three seeds, translation included (BLEU and chrF overall and BLEU per bucket)."""
    assert main(["rescore", str(ROOT / "docs" / "cpu-full")]) == 0
    assert "631 published numbers and verdicts re-scored from the outcomes, 0 differ" in capsys.readouterr().out


def test_the_published_cpu_long_report_rescores_to_its_printed_numbers(capsys):
    """docs/cpu-long: one seed, context use to 1,024 tokens, extrapolation to 1,024 and MQAR at the floor."""
    assert main(["rescore", str(ROOT / "docs" / "cpu-long")]) == 0
    assert "899 published numbers and verdicts re-scored from the outcomes, 0 differ" in capsys.readouterr().out


def test_a_changed_outcome_is_named_and_a_missing_one_is_one_line(tmp_path, capsys):
    dest = tmp_path / "cpu"
    shutil.copytree(PUBLISHED, dest)
    path = dest / "runs" / "ptb" / "tcn" / "examples" / "seed0.npz"
    o = outcomes.load(path)
    o["values"] = o["values"] + 0.01  # every window's NLL up by 0.01: perplexity up by 1%
    outcomes.save(path, o)
    assert main(["rescore", str(dest)]) == 1
    out = capsys.readouterr().out
    assert "differs: summary.csv ptb/tcn value: published 202.228" in out and "ptb/lstm" not in out
    path.unlink()
    assert main(["rescore", str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed0.npz is missing" in err[0]
    assert main(["rescore", str(tmp_path)]) == 2  # no summary.csv: not a published folder


def test_collapsing_outcomes_keeps_every_mean_interval_and_paired_test():
    rng = np.random.default_rng(0)
    n, groups = 6000, 120
    group = np.sort(rng.integers(0, groups, n)).astype(np.int32)
    bucket = (np.arange(n) % 4).astype(np.int16)
    full = [{"values": rng.normal(5 + shift, 1, n).astype(np.float32), "weights": np.ones(n, np.float32),
             "bucket": bucket, "group": group} for shift in (0.0, 0.05)]
    small = [collapse(o) for o in full]
    assert len(small[0]["values"]) == len(set(zip(group, bucket))) < n / 10
    for keep in (None, 2):
        parts = [(o if keep is None else {k: v[o["bucket"] == keep] for k, v in o.items()}) for o in (full[0], small[0])]
        a, b = (stats.bootstrap_interval(p["values"], p["weights"], p["group"], transform=np.exp) for p in parts)
        assert a["value"] == pytest.approx(b["value"], rel=1e-9)
        assert (a["lo"], a["hi"]) == pytest.approx((b["lo"], b["hi"]), rel=1e-9)
    paired = [stats.paired_bootstrap(x[0]["values"], x[1]["values"], x[0]["weights"], x[0]["group"],
                                     higher_is_better=False) for x in (full, small)]
    assert paired[0]["verdict"] == paired[1]["verdict"]
    assert paired[0]["diff"] == pytest.approx(paired[1]["diff"], rel=1e-9)
    assert np.array_equal(small[0]["group"], small[1]["group"])  # two models' files still pair row by row


def test_translations_rescore_bleu_and_chrf_from_the_published_hypotheses(tmp_path, capsys):
    hyps = ["Im Anfang schuf Gott Himmel und Erde.", "Und Gott sprach: Es werde Licht.",
            "Die Erde war wüst.", "Es ward Abend und Morgen, der erste Tag."]
    r = translation_eval("transformer", hyps)
    bleu = stats.bleu_interval(hyps, REFERENCES, seed=0)  # as evaluate writes a seed's intervals
    chrf = stats.chrf_interval(hyps, REFERENCES, seed=0)
    r["seeds"][0].update(interval={"lo": bleu["lo"], "hi": bleu["hi"]}, chrf=r["chrf"],
                         chrf_interval={"lo": chrf["lo"], "hi": chrf["hi"]})
    r["overall_interval"] = {"lo": bleu["lo"], "hi": bleu["hi"], "method": "sacreBLEU bootstrap"}
    r["chrf_interval"] = {"lo": chrf["lo"], "hi": chrf["hi"], "method": "sacreBLEU bootstrap"}
    runs = write_runs(tmp_path, [r])
    examples = runs / "bible-ende" / "transformer" / "examples"
    examples.mkdir()
    outcomes.save_translations(examples, 0, hyps, REFERENCES, REFERENCES)
    # the target-side NLL outcomes evaluate also keeps: one row per target token
    outcomes.save(examples / "seed0.npz", {"values": np.full(8, 3.5, np.float32), "weights": np.ones(8, np.float32),
                                           "bucket": np.zeros(8, np.int16), "group": np.repeat(np.arange(4), 2).astype(np.int32)})
    write_report(collect(runs), tmp_path / "reports")
    assert main(["publish", str(tmp_path / "pub"), f"runs={runs}", f"reports={tmp_path / 'reports'}"]) == 0
    assert "no tokenized test split here (`dvc repro tokenize@bible-ende`)" in capsys.readouterr().err
    published = tmp_path / "pub" / "runs" / "bible-ende" / "transformer" / "examples"
    assert sorted(p.name for p in published.iterdir()) == ["seed0.hyp.txt.gz", "seed0.npz", "seed0.ref.txt.gz",
                                                          "seed0.src.txt.gz"]
    assert main(["rescore", str(tmp_path / "pub")]) == 0
    assert ", 0 differ" in capsys.readouterr().out
    (published / "seed0.hyp.txt.gz").write_bytes(gzip.compress("\n".join(hyps[:3] + ["Abend."]).encode()))
    assert main(["rescore", str(tmp_path / "pub")]) == 1
    out = capsys.readouterr().out
    assert "bible-ende/transformer value" in out and "bible-ende/transformer chrf" in out


def rescored(out: str) -> int:
    return int(re.search(r"(\d+) published numbers and verdicts re-scored", out).group(1))


def test_per_bucket_bleu_rescores_from_the_published_source_lengths(tmp_path, capsys):
    """Sentences of 10, 12, 20 and 30 source tokens: buckets 1-16 and 17-32 hold two each; their BLEU and
    sacreBLEU intervals re-score from the hypotheses once publish has written the source lengths, and a
    sentence moved to another bucket is named."""
    hyps = ["Im Anfang schuf Gott die Himmel und Erde.", "Und Gott sprach: Es werde Licht!",
            "Die Erde war wüst und leer.", "Und es ward Abend und es ward Morgen: der erste Tag."]
    from sacrebleu.metrics import BLEU

    r = translation_eval("transformer", hyps)
    per_bucket, per_bucket_interval = [], []
    for members in ([0, 1], [2, 3]):
        h, t = [hyps[i] for i in members], [REFERENCES[i] for i in members]
        per_bucket.append(BLEU().corpus_score(h, [t]).score)
        found = stats.bleu_interval(h, t, seed=0)
        per_bucket_interval.append({"lo": found["lo"], "hi": found["hi"]})
    bleu = stats.bleu_interval(hyps, REFERENCES, seed=0)
    r["seeds"][0].update(interval={"lo": bleu["lo"], "hi": bleu["hi"]}, count=[2, 2, 0, 0],
                         per_bucket=per_bucket + [None, None], per_bucket_interval=per_bucket_interval + [None, None])
    r.update(per_bucket=per_bucket + [None, None], count=[2, 2, 0, 0])
    runs = write_runs(tmp_path, [r])
    examples = runs / "bible-ende" / "transformer" / "examples"
    examples.mkdir()
    outcomes.save_translations(examples, 0, hyps, REFERENCES, REFERENCES)
    write_report(collect(runs), tmp_path / "reports")
    assert main(["publish", str(tmp_path / "pub"), f"runs={runs}", f"reports={tmp_path / 'reports'}"]) == 0
    buckets = pd.read_csv(tmp_path / "pub" / "buckets.csv")
    assert buckets[buckets["value"].notna()]["value"].tolist() == pytest.approx(per_bucket)
    assert main(["rescore", str(tmp_path / "pub")]) == 0
    without = rescored(capsys.readouterr().out)
    lengths = tmp_path / "pub" / "runs" / "bible-ende" / "transformer" / "examples" / "source_lengths.txt.gz"
    lengths.write_bytes(gzip.compress(b"10\n12\n20\n30\n"))
    assert main(["rescore", str(tmp_path / "pub")]) == 0
    out = capsys.readouterr().out
    assert ", 0 differ" in out and rescored(out) == without + 12  # 4 buckets (2 empty) x value, lo, hi
    lengths.write_bytes(gzip.compress(b"10\n12\n14\n30\n"))  # the third sentence moves to 1-16
    assert main(["rescore", str(tmp_path / "pub")]) == 1
    assert "buckets.csv bible-ende/transformer/1-16 value" in capsys.readouterr().out
    lengths.write_bytes(gzip.compress(b"10\n12\n"))
    assert main(["rescore", str(tmp_path / "pub")]) == 2
    assert "has 2 lines for 4 test sentences" in capsys.readouterr().err


def test_publish_without_outcomes_is_one_line(tmp_path, capsys):
    runs = write_runs(tmp_path, [translation_eval("transformer", REFERENCES)])
    write_report(collect(runs), tmp_path / "reports")
    assert main(["publish", str(tmp_path / "pub"), f"runs={runs}", f"reports={tmp_path / 'reports'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "examples does not exist" in err[0]
    assert json.loads((runs / "bible-ende" / "transformer" / "eval.json").read_text())["metric"] == "bleu"


def _lm_outcomes(rng, nll: float) -> dict:
    """evaluate's test outcomes of a language model: 20 windows of 128 positions, bucketed by position."""
    position = np.tile(np.arange(1, 129), 20)
    return {"values": rng.normal(nll, 1.0, len(position)).astype(np.float32),
            "weights": np.ones(len(position), np.float32),
            "bucket": np.searchsorted(EDGES, position).astype(np.int16),
            "group": np.repeat(np.arange(20), 128).astype(np.int32)}


def _context_outcomes(rng, nll: list[float], n: int = 2048) -> dict:
    """The context probe's (pipeline/measure/context_probe.py): the same n targets once per context bucket,
    in blocks of 128 consecutive targets; a token's NLL shared across buckets plus a per-bucket shift."""
    token = rng.normal(0.0, 1.0, n)
    return {"values": np.concatenate([token + m + rng.normal(0, 0.05, n) for m in nll]).astype(np.float32),
            "weights": np.ones(n * len(nll), np.float32), "bucket": np.repeat(np.arange(len(nll)), n).astype(np.int16),
            "group": np.tile(np.arange(n) // 128, len(nll)).astype(np.int32)}


def test_the_context_use_table_rescores_from_the_published_probe_outcomes(tmp_path, capsys):
    """publish collapses the probe's outcomes per (block, bucket) and copies context_use.csv; rescore recomputes
    the table from them alone (the report's code) and names a changed value."""
    rng = np.random.default_rng(3)
    shifts = {"lstm": [5.3, 5.2, 5.2, 5.2], "transformer": [5.3, 5.2, 5.1, 5.1]}  # gains stop by 32 / by 64
    files, results = {}, []
    for model, seeds in (("lstm", 2), ("transformer", 1)):
        for seed in range(seeds):
            files[model, f"seed{seed}.npz"] = _lm_outcomes(rng, 5.2)
            files[model, f"seed{seed}.context.npz"] = _context_outcomes(rng, shifts[model])
        mains = [files[model, f"seed{seed}.npz"] for seed in range(seeds)]
        # eval.json's numbers are those of its outcomes, as evaluate writes them
        ppl = [(float(np.exp(o["values"].mean())),
                [float(np.exp(o["values"][o["bucket"] == b].mean())) for b in range(4)]) for o in mains]
        results.append(make_eval("ptb", model, ppl))
    runs = write_runs(tmp_path, results)
    for (model, name), o in files.items():
        (runs / "ptb" / model / "examples").mkdir(exist_ok=True)
        outcomes.save(runs / "ptb" / model / "examples" / name, o)
    write_report(collect(runs), tmp_path / "reports")
    table = (tmp_path / "reports" / "context_use.csv").read_text()
    used = pd.read_csv(tmp_path / "reports" / "context_use.csv").groupby("model")[["used_up_to", "paired"]].first()
    assert used.to_dict() == {"used_up_to": {"lstm": 32, "transformer": 64},
                              "paired": {"lstm": True, "transformer": True}}  # from the probe's outcomes
    pub = tmp_path / "pub"
    assert main(["publish", str(pub), f"runs={runs}", f"reports={tmp_path / 'reports'}"]) == 0
    published = outcomes.load(pub / "runs" / "ptb" / "lstm" / "examples" / "seed1.context.npz")
    assert len(published["values"]) == 16 * 4  # 8,192 probe rows -> one per (block, bucket)
    assert (pub / "context_use.csv").read_text() == table
    assert main(["rescore", str(pub)]) == 0
    out = capsys.readouterr().out
    assert ", 0 differ" in out
    compared = int(out.split("[rescore]")[1].split(":")[1].split()[0])
    (pub / "context_use.csv").unlink()  # a folder published before context use was: not checked for it
    assert main(["rescore", str(pub)]) == 0
    assert f": {compared - 2 * 4 * 7} published numbers" in capsys.readouterr().out
    lines = table.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("ptb,transformer,64,"))
    cells = lines[row].split(",")
    cells[3] = "150.0"  # ppl with 33-64 tokens of context
    (pub / "context_use.csv").write_text("\n".join(lines[:row] + [",".join(cells)] + lines[row + 1:]) + "\n")
    assert main(["rescore", str(pub)]) == 1
    out = capsys.readouterr().out
    assert "differs: context_use.csv ptb/transformer/64 ppl: published 150.0" in out and ", 1 differ" in out
