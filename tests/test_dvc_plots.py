"""`dvc plots show` and `dvc plots diff` with the plots dvc.yaml declares work offline: the HTML embeds
the report's titled PNGs as images and refers to nothing outside the page's own folder (DVC's vega
charts load vega from a CDN, so they are not declared). Run by real DVC in a scratch git repository.
The learning curves, once vega plots, are one of those PNGs."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.dvc_file import PLOTS

URL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


def png(path: Path, title: str) -> None:
    """A titled chart as the report draws one (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([1, 2, 3], [3, 1, 2], label="lstm")
    ax.set_title(title)
    ax.set_ylabel("ppl (lower is better)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-2000:])
    return done


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def offline_page(out: Path) -> str:
    """index.html of a `dvc plots` output folder, checked to load nothing from elsewhere."""
    html = (out / "index.html").read_text()
    assert "<script" not in html and not URL.search(html), URL.findall(html)
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (out / src).is_file(), src  # every image is a file beside the page
    return html


def test_dvc_plots_show_and_diff_need_no_network(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    run(dvc("init", "-q"), repo)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": PLOTS}))
    png(repo / "reports" / "plots" / "ptb_metric_by_bucket.png", "ptb: test ppl by length bucket")
    data = repo / "reports" / "plot_data" / "metric_by_bucket" / "ptb.csv"  # the report writes these too:
    data.parent.mkdir(parents=True)  # declared as a plot, DVC would draw it with vega from a CDN
    data.write_text("model,bucket_hi,value,count\nlstm,16,250.0,2576\nlstm,32,240.0,2576\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "report"], repo)
    png(repo / "reports" / "plots" / "ptb_metric_by_bucket.png", "ptb: test ppl by length bucket (changed)")

    run(dvc("plots", "show", "-o", str(tmp_path / "show")), repo)
    html = offline_page(tmp_path / "show")
    assert "<p>reports/plots/ptb_metric_by_bucket.png</p>" in html and html.count("<img ") == 1

    run(dvc("plots", "diff", "HEAD", "-o", str(tmp_path / "diff")), repo)
    html = offline_page(tmp_path / "diff")
    assert html.count("<img ") == 2 and "<p>HEAD</p>" in html and "<p>workspace</p>" in html


def test_the_learning_curves_are_a_titled_png_per_task(tmp_path):
    import pandas as pd

    from pipeline.report.plots import _plot_learning_curve

    rows = [{"task": "ptb", "model": model, "seed": seed, "step": step, "split": split,
             "metric": "loss" if split == "train" else "ppl", "value": 300.0 / step + seed + (model == "tcn")}
            for model in ("lstm", "tcn") for seed in (0, 1) for step in (10, 20, 30) for split in ("train", "val")]
    path = tmp_path / "ptb_learning_curve.png"
    fig = _plot_learning_curve("ptb", pd.DataFrame(rows), ["lstm", "tcn"], path)
    loss, val = fig.axes
    assert loss.get_title() == "ptb: training loss (mean over seeds)" and loss.get_ylabel() == "training loss"
    assert val.get_title() == "ptb: validation ppl (mean over seeds)" and val.get_ylabel() == "validation ppl"
    lstm = val.get_lines()[0]
    assert list(lstm.get_xdata()) == [10, 20, 30] and list(lstm.get_ydata()) == [30.5, 15.5, 10.5]  # seed mean
    assert path.read_bytes().startswith(b"\x89PNG")
