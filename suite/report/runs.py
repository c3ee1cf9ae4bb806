"""A study's runs, read from MLflow into pandas and grouped into configurations.

One row per trial run (tag ``kind=trial``) with its phase, variant, seed, state, every param as
``params.<key>`` and every final metric (the value at the last step) as ``metrics.<key>``.
Runs with the same phase, variant and params apart from ``IDENTITY_EXCLUDED`` form one
configuration, and each of its seeds is one sample of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from suite import tracking

log = logging.getLogger(__name__)

# Params that name or place a run without changing what it trains.
IDENTITY_EXCLUDED = frozenset({
    "train.seed", "train.run_name", "train.out_dir", "train.experiment", "train.device",
    "eval.inception_weights",
})
PHASES = ("search", "confirm")
META_COLUMNS = ["run_id", "phase", "variant", "seed", "trial_number", "state", "budget", "status",
                "failure_reason", "config_id", "start_time", "end_time"]

COMPLETE, PRUNED, DIVERGED, FAILED, RUNNING, INTERRUPTED, SUPERSEDED = (
    "complete", "pruned", "diverged", "failed", "running", "interrupted", "superseded")
STATES = (COMPLETE, PRUNED, DIVERGED, FAILED, INTERRUPTED, RUNNING, SUPERSEDED)


def trial_state(status: str, tags: dict[str, str]) -> str:
    """Return a run's outcome: complete, pruned, diverged, failed, interrupted, running or superseded.

    A ``superseded`` tag decides first: the run confirmed a "best" configuration that a search
    trial finished later (a retry) has beaten. The study's ``trial_state`` tag COMPLETE or PRUNED
    decides next. Otherwise the MLflow run
    status decides, and the trainer's ``failure`` tag distinguishes a diverged run (``diverged``)
    and an interrupted one (``interrupted``, which the study retries) from other failures.
    """
    if tags.get(tracking.SUPERSEDED_TAG):
        return SUPERSEDED
    state = tags.get("trial_state", "")
    if state == "COMPLETE":
        return COMPLETE
    if state == "PRUNED":
        return PRUNED
    if status == "RUNNING":
        return RUNNING
    if tags.get("failure") == "interrupted":
        return INTERRUPTED
    if state == "FAIL" or status == "FAILED":
        return DIVERGED if tags.get("failure") == "diverged" else FAILED
    if status == "KILLED":
        return PRUNED if tags.get("stopped") else INTERRUPTED
    if status == "FINISHED":
        return COMPLETE
    return RUNNING


def config_id(params: dict[str, str]) -> str:
    """Return a short hash of the params that define what a run trains (seed and names excluded)."""
    identity = {k: v for k, v in sorted(params.items()) if k not in IDENTITY_EXCLUDED}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def _as_int(text: str | None) -> float:
    try:
        return int(text)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class StudyRuns:
    """Everything the report reads from MLflow about one study, for one budget."""

    name: str
    parents: list[dict[str, Any]]        # the study invocations (tag kind=study) of this budget
    frame: pd.DataFrame                  # one row per trial run of this budget
    budget: str
    other_budgets: dict[str, int] = field(default_factory=dict)   # budget -> trial runs left out

    @property
    def param_keys(self) -> list[str]:
        return sorted(c.removeprefix("params.") for c in self.frame.columns if c.startswith("params."))

    @property
    def metric_keys(self) -> list[str]:
        return sorted(c.removeprefix("metrics.") for c in self.frame.columns if c.startswith("metrics."))


def _frame(trials: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for run in trials:
        tags = run["tags"]
        row = {
            "run_id": run["run_id"],
            "phase": tags.get("phase", ""),
            "variant": tags.get("variant", ""),
            "seed": _as_int(tags.get("seed", run["params"].get("train.seed"))),
            "trial_number": _as_int(tags.get("trial_number")),
            "state": trial_state(run["status"], tags),
            "budget": tags.get("budget", ""),
            "status": run["status"],
            "failure_reason": tags.get(tracking.SUPERSEDED_TAG, tags.get("failure_reason", tags.get("stopped", ""))),
            "config_id": config_id(run["params"]),
            "start_time": run["start_time"],
            "end_time": run["end_time"],
        }
        row.update({f"params.{k}": v for k, v in run["params"].items()})
        row.update({f"metrics.{k}": v for k, v in run["metrics"].items()})
        row.update({f"tags.{k}": v for k, v in tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else META_COLUMNS)
    ordered = META_COLUMNS + sorted(c for c in frame.columns if c not in META_COLUMNS)
    frame = frame.reindex(columns=ordered)
    return frame.sort_values(["phase", "variant", "config_id", "seed", "start_time", "run_id"],
                             na_position="last", kind="mergesort").reset_index(drop=True)


def load(name: str, uri: str | None = None, budget: str | None = None) -> StudyRuns:
    """Read every run of study ``name`` from MLflow, keeping the trials of one budget.

    Args:
        name: the study (and MLflow experiment) name.
        uri: the tracking URI; None uses MLflow's default.
        budget: the budget to report; None takes the budget of the latest study invocation.

    Raises:
        tracking.ExperimentNotFound: no experiment of that name.
        ValueError: ``budget`` names a budget the study has no runs of.
    """
    runs = tracking.search_runs(name, uri=uri)
    parents = [r for r in runs if r["tags"].get("kind") == "study"]
    trials = [r for r in runs if r["tags"].get("kind") == "trial"]
    budgets = Counter(r["tags"].get("budget", "") for r in trials)
    if budget is None:
        latest = max(parents or trials or [{}], key=lambda r: (r.get("start_time") or 0, r.get("run_id", "")))
        budget = latest.get("tags", {}).get("budget", "")
    elif budget not in budgets:
        raise ValueError(f"study {name!r} has no trial runs of budget {budget!r}; "
                         f"its budgets: {', '.join(sorted(budgets)) or 'none'}")
    kept = [r for r in trials if r["tags"].get("budget", "") == budget]
    log.info("read %d runs of study %r (%d trial runs of budget %r)", len(runs), name, len(kept), budget)
    return StudyRuns(
        name=name,
        parents=[p for p in parents if p["tags"].get("budget", "") == budget],
        frame=_frame(kept),
        budget=budget,
        other_budgets={b: n for b, n in sorted(budgets.items()) if b != budget},
    )


def state_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Count the trial runs in each state, in the order of ``STATES``."""
    counts = Counter(frame["state"]) if len(frame) else Counter()
    return {state: counts.get(state, 0) for state in STATES}


@dataclass
class Configuration:
    """Runs of one phase that train the same thing with different seeds."""

    phase: str
    variant: str
    config_id: str
    label: str
    runs: pd.DataFrame          # one row per seed (the latest complete run of each seed)
    duplicates: list[str]       # run ids of older runs of an already-counted seed, left out

    @property
    def run_ids(self) -> list[str]:
        return list(self.runs["run_id"])

    @property
    def seeds(self) -> int:
        return int(self.runs["seed"].nunique())

    def values(self, key: str, count: float | None) -> list[float]:
        """Return the final value of metric ``key`` per run; NaN where it is missing.

        Only values logged with sample count ``count`` (the metric ``key/n``) are kept, so
        numbers of different sample counts never mix. ``count=None`` selects the runs that
        logged no count for ``key``.
        """
        values = self.column(f"metrics.{key}")
        counts = self.column(f"metrics.{key}/n")
        return [v if _same_count(c, count) else math.nan for v, c in zip(values, counts)]

    def counts(self, key: str) -> list[float | None]:
        """Return the distinct sample counts that runs logged metric ``key`` with (None: no count)."""
        found = {None if math.isnan(c) else c
                 for v, c in zip(self.column(f"metrics.{key}"), self.column(f"metrics.{key}/n"))
                 if not math.isnan(v)}
        return sorted(found, key=lambda c: (c is None, c or 0))

    def column(self, name: str) -> list[float]:
        """Return a numeric column of the runs (``metrics.<key>`` or a derived one); NaN where missing."""
        if name not in self.runs:
            return [math.nan] * len(self.runs)
        return [float(v) for v in pd.to_numeric(self.runs[name], errors="coerce")]

    def param(self, key: str) -> str:
        """Return the value of param ``key`` (the same in every run of the configuration)."""
        column = f"params.{key}"
        if column not in self.runs or self.runs[column].isna().all():
            return ""
        return str(self.runs[column].dropna().iloc[0])


def _same_count(count: float, expected: float | None) -> bool:
    return math.isnan(count) if expected is None else count == expected


def _label(phase: str, variant: str, runs: pd.DataFrame) -> str:
    if phase == "search":
        numbers = sorted({int(n) for n in runs["trial_number"] if not math.isnan(n)})
        if numbers:
            return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(map(str, numbers))
    return variant or "(no variant)"


def configurations(frame: pd.DataFrame, phase: str) -> list[Configuration]:
    """Group the complete runs of ``phase`` into configurations, in a fixed order.

    A seed run more than once keeps its latest run; the older ones are listed as duplicates.
    """
    complete = frame[(frame["phase"] == phase) & (frame["state"] == COMPLETE)]
    found = []
    for (variant, cid), runs in complete.groupby(["variant", "config_id"], sort=True):
        runs = runs.sort_values(["start_time", "run_id"], kind="mergesort")
        latest = runs.drop_duplicates("seed", keep="last")
        duplicates = sorted(set(runs["run_id"]) - set(latest["run_id"]))
        latest = latest.sort_values(["seed", "run_id"], kind="mergesort")
        found.append(Configuration(phase, variant, cid, _label(phase, variant, latest), latest, duplicates))
    labels = Counter(c.label for c in found)
    for config in found:
        if labels[config.label] > 1:
            config.label = f"{config.label} [{config.config_id}]"
    return found


def varying_params(configs: list[Configuration]) -> list[str]:
    """Return the param keys whose value differs between the configurations, sorted."""
    if not configs:
        return []
    keys = sorted({c.removeprefix("params.") for config in configs for c in config.runs.columns
                   if c.startswith("params.")} - IDENTITY_EXCLUDED)
    return [k for k in keys if len({config.param(k) for config in configs}) > 1]


def runs_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the table written to ``runs.csv``: identity columns, then every param and metric."""
    keep = ["run_id", "phase", "variant", "seed", "trial_number", "state", "budget", "status",
            "failure_reason", "config_id"]
    params = sorted(c for c in frame.columns if c.startswith("params."))
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    table = frame.reindex(columns=keep + params + metrics)
    return table.sort_values(["phase", "variant", "seed", "trial_number", "run_id"],
                             na_position="last", kind="mergesort")
