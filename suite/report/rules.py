"""Per-run statistics behind the claims that are not a plain comparison of final metrics.

- Radius sweep: Spearman's rank correlation between the radius ``r`` and a metric of the
  images decoded at that radius (the centre property).
- Speed: the first evaluated epoch at which FID reaches a target.
- Collapse episodes: drops of mode coverage between evaluations, and whether they recover.

Histories come in as ``(step, value)`` pairs, where the step of an evaluation metric is its epoch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from suite.report import stats
from suite.report.runs import Configuration

RADIUS_KEY = re.compile(r"^radius/(\d+(?:\.\d+)?)/(.+)$")
COUNT_SUFFIXES = ("/n", "/n_real")

History = list[tuple[int, float]]
HistoryReader = Callable[[str, str], History]


def radius_keys(config_keys: list[str], name: str) -> dict[float, str]:
    """Return ``{r: key}`` for the radius-sweep keys of metric ``name`` (``radius/<r>/<name>``)."""
    found = {}
    for key in config_keys:
        match = RADIUS_KEY.match(key)
        if match and match.group(2) == name:
            found[float(match.group(1))] = key
    return dict(sorted(found.items()))


def radius_values(config: Configuration, name: str, radius_max: float = math.inf) -> dict[float, tuple[list[float], float | None]]:
    """Return ``{r: (values per run, sample count)}`` of metric ``name`` over the radius sweep.

    At each radius only the values of the largest sample count are kept, so counts never mix.
    """
    keys = [c.removeprefix("metrics.") for c in config.runs.columns if c.startswith("metrics.")]
    series = {}
    for radius, key in radius_keys(keys, name).items():
        if radius > radius_max:
            continue
        counts = config.counts(key)
        if not counts:
            continue  # no run of this configuration logged the radius
        count = max((c for c in counts if c is not None), default=None)
        series[radius] = (config.values(key, count), count)
    return series


def radius_rho(config: Configuration, name: str, radius_max: float) -> list[float]:
    """Return, per run, Spearman's rho between r (up to ``radius_max``) and metric ``name``."""
    series = radius_values(config, name, radius_max)
    radii = list(series)
    rhos = []
    for index in range(len(config.runs)):
        values = [series[r][0][index] for r in radii]
        rhos.append(stats.spearman(radii, values))
    return rhos


def history_at_count(read: HistoryReader, run_id: str, key: str, count: float | None) -> History:
    """Return the history of ``key`` keeping only evaluations made with sample count ``count``."""
    history = read(run_id, key)
    if count is None:
        return history
    counts = dict(read(run_id, key + "/n"))
    return [(step, value) for step, value in history if counts.get(step) == count]


@dataclass(frozen=True)
class Reach:
    """When one run first reached a target value."""

    epochs: float        # the epoch, or the last evaluated epoch + 1 when never reached
    reached: bool


def epochs_to_reach(history: History, target: float) -> Reach | None:
    """Return the first epoch whose value is at or below ``target``; None without a history."""
    if not history:
        return None
    for epoch, value in history:
        if value <= target:
            return Reach(float(epoch), True)
    return Reach(float(history[-1][0] + 1), False)


@dataclass
class Episodes:
    """Collapse episodes found in one or more mode-coverage histories."""

    recovered: int = 0
    not_recovered: int = 0
    censored: int = 0     # too close to the end of the run to tell

    def add(self, other: "Episodes") -> None:
        self.recovered += other.recovered
        self.not_recovered += other.not_recovered
        self.censored += other.censored


def collapse_episodes(history: History, drop: float, recover_epochs: int, level: float) -> Episodes:
    """Find the episodes where coverage falls below ``(1 - drop)`` times the previous evaluation.

    An episode recovered when an evaluation at most ``recover_epochs`` epochs later reaches
    ``level`` times the value before the drop. An episode that did not recover and whose window
    runs past the last evaluation is censored.
    """
    found = Episodes()
    last_epoch = history[-1][0] if history else 0
    for index in range(1, len(history)):
        epoch, value = history[index]
        before = history[index - 1][1]
        if not before > 0 or value >= (1.0 - drop) * before:
            continue
        window = [v for e, v in history[index + 1:] if e <= epoch + recover_epochs]
        if any(v >= level * before for v in window):
            found.recovered += 1
        elif epoch + recover_epochs > last_epoch:
            found.censored += 1
        else:
            found.not_recovered += 1
    return found
