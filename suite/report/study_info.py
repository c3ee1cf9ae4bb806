"""The study file's settings and Optuna's record of the search, as plain values for the report.

The report reaches Optuna only through ``suite.study`` (``load_spec``, ``trials_frame``,
``param_importances``, ``pareto_front``); tests pass any object with those four functions.
Every part that cannot be had (no study file, no storage given, too few trials) becomes a note
in the report instead of a missing section without a reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

log = logging.getLogger(__name__)


class StudyApi(Protocol):
    """The four functions of ``suite.study`` that the report calls."""

    def load_spec(self, name: str) -> Any: ...
    def trials_frame(self, name: str, storage: str) -> pd.DataFrame: ...
    def param_importances(self, name: str, storage: str) -> dict[str, float]: ...
    def pareto_front(self, name: str, storage: str) -> list[int]: ...


@dataclass
class StudyInfo:
    """The study file's settings and Optuna's record of the search, where available."""

    spec: Any = None                             # suite.studyfile.StudySpec, or None
    trials: pd.DataFrame | None = None           # suite.study.trials_frame
    importances: dict[str, float] | None = None
    pareto: list[int] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """Return ``(metric key, "minimize" | "maximize")`` per objective; empty without a spec."""
        if self.spec is None:
            return []
        return list(zip(self.spec.objectives, self.spec.directions))

    @property
    def log_params(self) -> set[str]:
        """Return the search parameters that were sampled on a log scale."""
        return set(self.spec.log_params) if self.spec is not None else set()

    @property
    def searched_params(self) -> list[str]:
        """Return the keys of the search space (grid included), in file order."""
        return list(self.spec.space) if self.spec is not None else []

    def claim_variants(self) -> dict[str, dict[str, str]]:
        """Return ``{claim id: {"treatment": ..., "control": ...}}`` from the study's [claims]."""
        if self.spec is None:
            return {}
        return {cid: {"treatment": m.treatment, "control": m.control} for cid, m in self.spec.claims.items()}

    def search_trials(self) -> pd.DataFrame | None:
        """Return Optuna's search-phase trials (confirmation trials left out), by number."""
        if self.trials is None or not len(self.trials):
            return None
        frame = self.trials
        if "phase" in frame:
            frame = frame[frame["phase"].fillna("search") == "search"]
        return frame.sort_values("number", kind="mergesort")


def _default_api() -> StudyApi:
    from suite import study  # imported on first use, so that importing suite.report does not import optuna

    return study


def load(name: str, storage: str | None, api: StudyApi | None = None) -> StudyInfo:
    """Collect the study's spec and, with a storage, Optuna's trials, importances and front.

    Args:
        name: the study name (``NAME`` or ``NAME@SOURCE``).
        storage: the Optuna storage URL; None skips every Optuna part with a note.
        api: the functions to call; None uses ``suite.study``.
    """
    info = StudyInfo()
    if api is None:
        try:
            api = _default_api()
        except ImportError as error:
            info.notes.append(f"suite.study could not be imported ({error}), so the study file was not read")
            return info
    try:
        info.spec = api.load_spec(name)
    except (OSError, ValueError) as error:
        log.warning("study file of %r not read: %s", name, error)
        info.notes.append(f"the study file could not be read ({error}); claim variants are the defaults "
                          "of studies/claims.toml and log axes are not known")
    if storage is None:
        info.notes.append("no Optuna storage given, so the optimisation history, the parameter importances "
                          "and the Pareto front are left out (pass --storage)")
        return info
    try:
        info.trials = api.trials_frame(name, storage)
        info.importances = api.param_importances(name, storage)
        if len(info.objectives) > 1:
            info.pareto = api.pareto_front(name, storage)
    except (OSError, ValueError, RuntimeError) as error:
        log.warning("Optuna study %r not read from %s: %s", name, storage, error)
        info.notes.append(f"the Optuna study could not be read from {storage} ({error})")
    return info


def trial_values(frame: pd.DataFrame, index: int) -> list[float]:
    """Return objective ``index`` of each trial in ``frame``; NaN for a trial without values."""
    found = []
    for values in frame["values"]:
        ok = isinstance(values, (list, tuple)) and len(values) > index and values[index] is not None
        found.append(float(values[index]) if ok else math.nan)
    return found
