"""Matplotlib drawing for the report (Agg backend, PNG files at a fixed size and resolution).

Every function takes plain values and writes one PNG. Missing values (NaN) are left out of a
plot, never drawn as zero. The same values give the same bytes, so reports stay reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

DPI = 100
COLUMNS = 3


@dataclass
class Band:
    """A mean with a 95% interval at each x; NaN entries are skipped."""

    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]


@dataclass
class Panel:
    """One subplot: a title, axis labels and its content."""

    title: str
    xlabel: str
    ylabel: str
    points: dict[str, tuple[list, list[float]]] = field(default_factory=dict)   # label -> (x, y) scatter
    lines: dict[str, list[tuple[list[float], list[float]]]] = field(default_factory=dict)  # label -> thin lines
    bands: dict[str, Band] = field(default_factory=dict)     # label -> mean line with interval
    log_x: bool = False
    categories: list[str] | None = None   # categorical x: the order of the categories
    floor: float | None = None   # the metric's lowest possible value; interval bands are cut there


def _finite(x: list, y: list[float]) -> tuple[list, list[float]]:
    pairs = [(a, b) for a, b in zip(x, y) if b is not None and math.isfinite(b)
             and (isinstance(a, str) or (a is not None and math.isfinite(a)))]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _draw(ax, panel: Panel) -> None:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = sorted(set(panel.points) | set(panel.lines) | set(panel.bands), key=_label_order(panel))
    for index, label in enumerate(labels):
        colour = colours[index % len(colours)]
        if label in panel.points:
            x, y = _finite(*panel.points[label])
            if panel.categories is not None:
                x = [panel.categories.index(str(v)) for v in x]
            ax.scatter(x, y, s=18, color=colour, label=label, alpha=0.8)
        for x, y in panel.lines.get(label, []):
            x, y = _finite(x, y)
            ax.plot(x, y, color=colour, linewidth=0.7, alpha=0.35)
        if label in panel.bands:
            band = panel.bands[label]
            x, y = _finite(band.x, band.mean)
            ax.plot(x, y, color=colour, marker="o", markersize=3, label=label)
            keep = [i for i, (lo, hi) in enumerate(zip(band.low, band.high)) if math.isfinite(lo) and math.isfinite(hi)]
            if keep:
                # A t-interval on a few seeds can reach below what the metric can take (FID < 0).
                lows = [band.low[i] if panel.floor is None else max(band.low[i], panel.floor) for i in keep]
                ax.fill_between([band.x[i] for i in keep], lows,
                                [band.high[i] for i in keep], color=colour, alpha=0.15, linewidth=0)
    if panel.categories is not None:
        ax.set_xticks(range(len(panel.categories)), panel.categories)
    if panel.log_x:
        ax.set_xscale("log")
    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    # Plain tick values: an offset such as "1e-6 + 0.1124" hides them. Only linear axes take it.
    for axis in ("x", "y"):
        try:
            ax.ticklabel_format(axis=axis, useOffset=False)
        except AttributeError:
            pass
    ax.grid(True, alpha=0.3)
    if labels and (len(labels) > 1 or panel.bands):
        ax.legend(fontsize=6)


def _label_order(panel: Panel):
    order = list(panel.bands) + list(panel.lines) + list(panel.points)
    return lambda label: order.index(label)


def panels(items: list[Panel], path: Path) -> Path:
    """Draw panels in a grid of up to three columns and save the figure as a PNG."""
    columns = min(COLUMNS, len(items))
    rows = math.ceil(len(items) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, items):
        _draw(ax, panel)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    return _save(fig, path)


def bars(groups: list[str], series: dict[str, Band], ylabel: str, title: str, path: Path) -> Path:
    """Draw grouped bars (one group per configuration) with 95% intervals; NaN bars are omitted."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 2), 3.4))
    width = 0.8 / max(1, len(series))
    for index, (name, band) in enumerate(series.items()):
        for group, mean, low, high in zip(range(len(groups)), band.mean, band.low, band.high):
            if not math.isfinite(mean):
                continue
            x = group + (index - (len(series) - 1) / 2) * width
            error = [[mean - low], [high - mean]] if math.isfinite(low) and math.isfinite(high) else None
            ax.bar(x, mean, width, color=f"C{index}", yerr=error, capsize=3,
                   label=name if group == _first_finite(band.mean) else None)
    ax.set_xticks(range(len(groups)), groups, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _first_finite(values: list[float]) -> int:
    return next((i for i, v in enumerate(values) if math.isfinite(v)), -1)


def horizontal_bars(values: dict[str, float], xlabel: str, title: str, path: Path) -> Path:
    """Draw one horizontal bar per key, largest first (parameter importances)."""
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(items) + 1.2))
    ax.barh(range(len(items)), [v for _, v in items], color="C0")
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    # No Software entry, so the bytes do not change with the matplotlib version.
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
