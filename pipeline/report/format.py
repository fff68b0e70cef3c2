"""Number and markdown formatting shared by the report's sections (no torch, no pandas state)."""
from __future__ import annotations

import math
from typing import Any, Optional

# A length bucket with fewer test examples than this names no winner and is drawn as not a finding
MIN_BUCKET_EXAMPLES = 30


def _num(x: Any) -> float:
    """None -> NaN, so pandas aggregates and NaN-aware formatting handle missing values."""
    return float("nan") if x is None else float(x)


def _is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_si(x: Any, digits: int = 3) -> str:
    """1534210 -> '1.53M'; counts, FLOPs and tokens/s span orders of magnitude."""
    if _is_nan(x):
        return "—"
    x = float(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def fmt_metric(x: Any, like: Any = None) -> str:
    """Precision by magnitude, not by metric name: 0.853 (fractions), 57.32, 181.4. `like` picks the
    precision from another number (a std is printed with its mean's decimals)."""
    if _is_nan(x):
        return "—"
    ref = abs(float(x if _is_nan(like) else like))
    decimals = 3 if ref < 1.5 else 2 if ref < 100 else 1
    return f"{float(x):.{decimals}f}"


def fmt_mb(x: Any) -> str:
    return "—" if _is_nan(x) else (f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}")


def fmt_receptive_field(tokens: Any, measured_at: Any, full: Optional[bool]) -> str:
    """'full (128)' when every measured position is seen, else the token count; '—' when unknown."""
    if full:
        at = tokens if _is_nan(measured_at) else measured_at
        return "full" if _is_nan(at) else f"full ({int(at)})"
    return "—" if _is_nan(tokens) else str(int(tokens))


# Backslash-escaped so free text (sample translations) renders literally: no emphasis, links or HTML.
MD_SPECIALS = set("\\`*_[]<>#&")
SAMPLE_MAX_CHARS = 300  # a degenerate hypothesis can repeat itself up to the length limit
SAMPLES_PER_MODEL = 3


def md_text(text: Any, limit: int = SAMPLE_MAX_CHARS) -> str:
    """One line of literal markdown text (md_table escapes '|' itself); '*(empty)*' for ''."""
    text = " ".join(str(text or "").split())
    if not text:
        return "*(empty)*"
    if len(text) > limit:
        text = text[:limit].rstrip() + "…"
    return "".join("\\" + c if c in MD_SPECIALS else c for c in text)


def md_table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """A GitHub markdown table; `align` is one char per column ('l' or 'r'), default: first left."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"md_table: {len(header)} columns but align {align!r}")
    esc = [[str(c).replace("|", "\\|") for c in row] for row in [header, *rows]]
    rule = [":--" if a == "l" else "--:" for a in align]
    return "\n".join("| " + " | ".join(r) + " |" for r in [esc[0], rule, *esc[1:]])
