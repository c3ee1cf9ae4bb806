"""Study data for the report: one row per trial, parameter importances and the Pareto front."""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from suite.study.storage import _load, _phase
from suite.studyfile import SEARCH
from suite.studyspec import DEFAULT_STORAGE


def trials_frame(name: str, storage: str = DEFAULT_STORAGE) -> pd.DataFrame:
    """Return one row per trial of study ``name`` as plain values.

    Columns:

    - ``number``, ``state`` (COMPLETE, PRUNED, FAIL, RUNNING or WAITING) and ``values`` (a list,
      or None);
    - one column per objective metric, named by its key (NaN without a value);
    - ``phase``, ``variant``, ``seed``, ``mlflow_run_id``, ``failure_reason`` (None when unset),
      ``datetime_start`` and ``datetime_complete``;
    - ``params_<key>`` per parameter and ``user_attrs_<key>`` per user attribute.

    Raises:
        StudyError: the storage or the study does not exist.
    """
    study = _load(name, storage)
    objectives = study.user_attrs.get("objectives") or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                               "values": list(trial.values) if trial.values else None}
        for i, metric in enumerate(objectives):
            row[metric] = trial.values[i] if trial.values else math.nan
        for key in ("phase", "variant", "seed", "mlflow_run_id", "failure_reason"):
            row[key] = trial.user_attrs.get(key, SEARCH if key in ("phase", "variant") else None)
        row["datetime_start"], row["datetime_complete"] = trial.datetime_start, trial.datetime_complete
        row.update({f"params_{k}": v for k, v in trial.params.items()})
        row.update({f"user_attrs_{k}": v for k, v in trial.user_attrs.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _search_study(study: optuna.Study) -> optuna.Study:
    """Return an in-memory copy holding only the complete search trials (confirmation runs left out)."""
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials([t for t in study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,)) if _phase(t) == SEARCH])
    return copy


def param_importances(name: str, storage: str = DEFAULT_STORAGE) -> dict[str, float]:
    """Return each search parameter's importance for the first objective (Optuna's default evaluator).

    Only complete search trials count. Returns an empty dict when it cannot be computed: fewer
    than two such trials, or no parameter that took two different values.

    Raises:
        StudyError: the storage or the study does not exist.
    """
    search = _search_study(_load(name, storage))
    trials = search.get_trials(deepcopy=False)
    varied = [k for k in (trials[0].params if trials else {}) if len({repr(t.params.get(k)) for t in trials}) > 1]
    if len(trials) < 2 or not varied:
        return {}
    sign = 1.0 if search.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    with warnings.catch_warnings():
        # PedAnova ranks parameters by how they reach low target values; the sign makes "low" mean "good".
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
        importances = optuna.importance.get_param_importances(search, params=varied,
                                                              target=lambda t: sign * t.values[0])
    return {key: float(value) for key, value in importances.items()}


def pareto_front(name: str, storage: str = DEFAULT_STORAGE) -> list[int]:
    """Return the numbers of the search trials on the Pareto front; empty for a single objective.

    Raises:
        StudyError: the storage or the study does not exist.
    """
    study = _load(name, storage)
    if len(study.directions) < 2:
        return []
    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    points = {t.number: [s * v for s, v in zip(signs, t.values)]
              for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _phase(t) == SEARCH}

    def dominated(a: list[float]) -> bool:
        return any(all(x <= y for x, y in zip(b, a)) and b != a for b in points.values())

    return sorted(number for number, point in points.items() if not dominated(point))



__all__ = ["param_importances", "pareto_front", "trials_frame"]
