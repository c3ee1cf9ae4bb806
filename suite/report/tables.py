"""The per-phase tables: each configuration's metrics as mean and 95% interval over seeds.

A column is one metric key at one sample count (``<key>/n``), so values of different feature
extractors or sample counts never share a column. The best mean of each column is bold;
configurations without a value show ``n/a`` and sort last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suite.config import IGNORED_BY_OBJECTIVE
from suite.metrics import keys
from suite.report import stats, text
from suite.report.claims import EXTRACTOR_ORDER, FEATURE_METRICS
from suite.report.runs import Configuration

TRAIN_SECONDS = "derived.train_seconds"   # sum of the run's epoch_seconds history


@dataclass(frozen=True)
class Column:
    """One table column: a metric at one sample count, with the direction that is better."""

    key: str                 # MLflow metric key, or TRAIN_SECONDS
    count: float | None      # sample count (None: the runs logged none)
    title: str
    better: str | None       # "lower", "higher" or None (no best is marked)

    def values(self, config: Configuration) -> list[float]:
        if self.key == TRAIN_SECONDS:
            return config.column(TRAIN_SECONDS)
        return config.values(self.key, self.count)


# (metric, title, better) in table order; feature-space metrics get one column per extractor.
TABLE_METRICS = (
    (keys.FID, "FID", "lower"),
    (keys.KID_MEAN, "KID", "lower"),
    (keys.IS_MEAN, "IS", "higher"),
    (keys.PRECISION, "precision", "higher"),
    (keys.RECALL, "recall", "higher"),
    (keys.MODES, "modes", "higher"),
    (keys.HQ_SHARE, "high-quality share", "higher"),   # 2-D data only
    (keys.RECON_ERROR, "reconstruction error", "lower"),
    (keys.code_norm_key("mean"), "mean ||E(x)|| / sqrt(nz)", None),
)


def metric_columns(configs: list[Configuration], metrics=TABLE_METRICS) -> list[Column]:
    """Return a column per metric key and sample count that any configuration logged."""
    columns = []
    for name, title, better in metrics:
        extractors = EXTRACTOR_ORDER if name in FEATURE_METRICS else ("",)
        for extractor in extractors:
            key = f"{name}_{extractor}" if extractor else name
            counts = sorted({c for config in configs for c in config.counts(key)},
                            key=lambda c: (c is None, -(c or 0)))
            label = f"{title} {extractor}".strip()
            columns += [Column(key, count, f"{label} ({text.count(count)})", better) for count in counts]
    return columns


def sort_column(columns: list[Column], objectives: list[tuple[str, str]]) -> tuple[Column | None, str]:
    """Return the column that orders the rows and its direction: the first objective, else FID."""
    for key, direction in objectives[:1]:
        for column in columns:
            if column.key == key:
                return column, "lower" if direction == "minimize" else "higher"
    fid = next((c for c in columns if c.key.startswith(keys.FID + "_")), None)
    return fid, "lower"


def order(configs: list[Configuration], column: Column | None, better: str) -> list[Configuration]:
    """Sort configurations by the mean of ``column`` (best first); missing values go last."""
    def key(config: Configuration):
        mean = stats.summarize(column.values(config)).mean if column else math.nan
        if not math.isfinite(mean):
            return (True, 0.0, config.label)
        return (False, mean if better == "lower" else -mean, config.label)

    return sorted(configs, key=key)


def _best(means: list[float], better: str | None) -> float | None:
    finite = [m for m in means if math.isfinite(m)]
    if better is None or len(finite) < 2 or min(finite) == max(finite):
        return None  # nothing to single out
    return min(finite) if better == "lower" else max(finite)


def metrics_table(configs: list[Configuration], columns: list[Column]) -> list[str]:
    """Return the markdown lines of a metrics table, one row per configuration."""
    summaries = [[stats.summarize(col.values(config)) for col in columns] for config in configs]
    best = [_best([row[i].mean for row in summaries], col.better) for i, col in enumerate(columns)]
    rows = []
    for config, row in zip(configs, summaries):
        cells = [config.label, str(config.seeds)]
        for summary, top in zip(row, best):
            cell = _cell(summary, config.seeds)
            if top is not None and summary.n and text.number(summary.mean) == text.number(top):  # ties as shown
                cell = _bold_mean(cell)
            cells.append(cell)
        cells.append(" ".join(f"`{run_id}`" for run_id in config.run_ids))
        rows.append(cells)
    header = ["configuration", "seeds"] + [col.title for col in columns] + ["MLflow runs"]
    return text.table(header, rows)


def _cell(summary: stats.Summary, seeds: int) -> str:
    if summary.n == 0:
        return "n/a"
    cell = text.number(summary.mean)
    if summary.has_interval:
        cell += f" [{text.number(summary.low)}, {text.number(summary.high)}]"
    if summary.n < seeds:
        cell += f" ({summary.n} of {seeds} runs)"
    return cell


def _bold_mean(cell: str) -> str:
    mean, _, rest = cell.partition(" ")
    return f"**{mean}**" + (f" {rest}" if rest else "")


def config_table(configs: list[Configuration], params: list[str]) -> list[str]:
    """Return the markdown lines of a table of the params that differ between configurations.

    Numbers get 4 significant digits. A param that the configuration's objective does not read
    (``z_penalty`` for dcgan) shows as ``(unused)``, so it does not pass for a difference.
    """
    rows = [[config.label, config.config_id] + [_param_cell(config, p) for p in params] for config in configs]
    return text.table(["configuration", "config id"] + params, rows)


def _param_cell(config: Configuration, key: str) -> str:
    value = config.param(key)
    if key in IGNORED_BY_OBJECTIVE.get(config.param("method.objective"), ()):
        return "(unused)"
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else text.number(number)
