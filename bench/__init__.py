"""Benchmarks: each writes JSON + a short markdown table under bench/results/."""
import json
from pathlib import Path


def write_results(report: dict, out: Path, table: str) -> None:
    """A benchmark's record: JSON at `out`, the markdown table beside it (.md), and the table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print("\n" + table + f"\n{report.get('wall_s')} s; wrote {out} and {out.with_suffix('.md')}")
