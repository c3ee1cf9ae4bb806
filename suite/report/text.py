"""Number and markdown formatting shared by the report's sections."""

from __future__ import annotations

import math

from suite.report import stats


def number(value: float | None) -> str:
    """Format a value with 4 significant digits; a missing or non-finite value is ``n/a``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def plural(number: int, noun: str) -> str:
    """Return ``1 trial``, ``2 trials``: the number with the noun in the right form."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def count(value: float | None) -> str:
    """Format a sample count as ``n=2000``."""
    return f"n={value:g}" if value is not None else "n not logged"


def summary(value: stats.Summary) -> str:
    """Format a mean with its 95% interval, ``12.3 [11.1, 13.5]``; one seed has no interval."""
    if value.n == 0:
        return "no value"
    if not value.has_interval:
        return f"{number(value.mean)} (one seed, no interval)"
    return f"{number(value.mean)} [{number(value.low)}, {number(value.high)}]"


def cell(text: object) -> str:
    """Make text safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return the lines of a markdown table (every row padded or cut to the header's width)."""
    width = len(header)
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * width]
    for row in rows:
        row = (list(row) + [""] * width)[:width]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return lines
