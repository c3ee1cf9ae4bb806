"""A study's definition as plain values, and where study files are found (no Optuna here).

``suite.studyfile`` parses a study file into a ``StudySpec``; the report and the study command
read the spec. Every value is a plain Python value, so nothing of Optuna leaks out.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = "sqlite:///optuna.db"  # Optuna storage of the study command, in the working folder
BUDGETS = ("smoke", "quick", "full")
SAMPLERS = ("tpe", "random", "grid", "nsga2")
PRUNERS = ("median", "none")
DIRECTIONS = ("minimize", "maximize")
PARAM_TYPES = ("float", "int", "categorical")
BEST = "best"  # confirmation variant: the best search trial's configuration
SEARCH = "search"  # variant tag of every search trial
CLAIM_ID = re.compile(r"C[1-8]")
# Files in studies/ that are not studies: the report's claim definitions.
RESERVED_FILES = ("claims",)
# Keys that the study command sets for every trial; a study file may not set them.
STUDY_OWNED = {
    "data.source": "the top-level key `data` (or --data)",
    "train.seed": "[search] seed for search trials and [confirm] seed_start for confirmation runs",
    "train.device": "--device",
    "train.out_dir": "the study command (outputs/studies/<study>)",
    "train.run_name": "the study command (trial-<number>-<variant>)",
    "train.experiment": "the study command (the study's name)",
}


class StudyError(ValueError):
    """An invalid or missing study file; the message names the file and the key."""


@dataclass(frozen=True)
class SearchParam:
    """One dimension of the search space, as an Optuna distribution describes it."""

    key: str  # dotted run-config key, e.g. method.z_penalty
    type: str  # float, int or categorical
    low: float | None = None
    high: float | None = None
    log: bool = False  # sampled uniformly in log(value)
    step: float | None = None  # grid step of float/int ranges; None is continuous (float) or 1 (int)
    choices: tuple[Any, ...] = ()  # categorical values

    def describe(self) -> str:
        """Return a short human-readable form: ``1e-04..10 (log)`` or ``{false, true}``."""
        if self.type == "categorical":
            return "{" + ", ".join(_toml_text(c) for c in self.choices) + "}"
        text = f"{self.low:g}..{self.high:g}"
        if self.step is not None:
            text += f" step {self.step:g}"
        return text + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Baseline:
    """A named confirmation variant: config overrides on top of the base config."""

    name: str
    overrides: dict[str, Any]
    best_of: str = ""  # take the best search parameters of this other study when it has them


@dataclass(frozen=True)
class ClaimMapping:
    """The confirmation variants that a claim compares (``control`` is empty for one-variant claims)."""

    treatment: str
    control: str = ""


@dataclass(frozen=True)
class Budget:
    """Config overrides and trial counts for one budget (smoke, quick or full)."""

    name: str
    n_trials: int  # search trials (capped at the grid size for the grid sampler)
    seeds: int  # seeds per confirmation variant
    timeout: float  # seconds after which no new search trial starts; 0 means none
    overrides: dict[str, Any]
    # per data source: overrides applied after ``overrides``, for sources that cost far more per epoch
    source_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the study's data sources that this budget runs; empty runs them all
    data: tuple[str, ...] = ()


@dataclass
class StudySpec:
    """A validated study file. Plain values only, so the report can read it without Optuna."""

    name: str  # the study's name: the file name, plus ``@<source>`` for one data source of several
    path: Path
    description: str
    data_sources: tuple[str, ...]
    objectives: tuple[str, ...]  # metric keys of suite.metrics.keys
    directions: tuple[str, ...]  # "minimize" or "maximize", one per objective
    base: dict[str, Any]  # dotted config overrides shared by every trial
    sources: dict[str, dict[str, Any]]  # per data source: overrides applied after ``base``
    sampler: str
    sampler_seed: int
    random_trials: int  # TPE: trials drawn at random before the model is used
    population_size: int  # NSGA-II population
    pruner: str
    pruner_startup_trials: int
    pruner_warmup_epochs: int
    space: dict[str, SearchParam]  # every sampled parameter, grid parameters included
    grid: dict[str, tuple[Any, ...]]
    baselines: dict[str, Baseline]
    confirm_variants: tuple[str, ...]
    confirm_seed_start: int
    claims: dict[str, ClaimMapping]
    budgets: dict[str, Budget] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        """True when the study optimises more than one metric."""
        return len(self.objectives) > 1

    @property
    def log_params(self) -> list[str]:
        """Keys of the search parameters sampled on a log scale."""
        return [key for key, param in self.space.items() if param.log]

    @property
    def claim_ids(self) -> list[str]:
        """The claim ids (C1..C8) the study covers, in file order."""
        return list(self.claims)

    def budget(self, name: str) -> Budget:
        """Return the named budget.

        Raises:
            StudyError: the study file defines no such budget.
        """
        if name not in self.budgets:
            raise StudyError(f"{self.path}: no budget {name!r}; this study defines "
                             f"{', '.join(self.budgets) or 'none'}")
        return self.budgets[name]

    def grid_size(self) -> int:
        """Return the number of points of the grid (1 for an empty grid)."""
        return math.prod(len(values) for values in self.grid.values())

    def for_source(self, source: str) -> "StudySpec":
        """Return the spec restricted to one data source, named ``<name>@<source>`` when renamed."""
        single = len(self.data_sources) == 1 and self.data_sources[0] == source
        name = self.name if single else f"{base_name(self.name)}@{source_slug(source)}"
        return dataclasses.replace(self, name=name, data_sources=(source,))


# ----------------------------------------------------------------------------------------------
# Finding study files


def repository_root() -> Path:
    """Return the folder that contains the ``suite`` package (the repository root of a checkout)."""
    return Path(__file__).resolve().parent.parent


def study_dirs() -> list[Path]:
    """Return the folders searched for study files: ``./studies``, then the repository's."""
    dirs = [Path.cwd() / "studies", repository_root() / "studies"]
    unique = []
    for folder in dirs:
        if folder.is_dir() and folder.resolve() not in [d.resolve() for d in unique]:
            unique.append(folder)
    return unique


def known_studies() -> dict[str, Path]:
    """Return every study name found in the study folders with its file; the first folder wins."""
    found: dict[str, Path] = {}
    for folder in study_dirs():
        for path in sorted(folder.glob("*.toml")):
            if path.stem not in RESERVED_FILES:
                found.setdefault(path.stem, path)
    return found


def base_name(name: str) -> str:
    """Return the study file's name of a study name (``modes@ring8`` -> ``modes``)."""
    return name.split("@", 1)[0]


def find_study_file(name: str) -> Path:
    """Return the file of study ``name``: a path to a TOML file, or a name in ``studies/``.

    Raises:
        StudyError: no such file; the message lists the known studies.
    """
    as_path = Path(name).expanduser()
    if name.endswith(".toml") or "/" in name:
        if as_path.is_file():
            return as_path
        raise StudyError(f"study file not found: {as_path}")
    known = known_studies()
    if base_name(name) in known:
        return known[base_name(name)]
    folders = ", ".join(str(d) for d in study_dirs()) or "./studies (missing)"
    close = difflib.get_close_matches(base_name(name), list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise StudyError(f"unknown study {name!r}.{hint} Known studies: {', '.join(known) or 'none'} "
                     f"(searched {folders}); a path to a TOML file also works.")


def source_slug(source: str) -> str:
    """Return a data source as a name part: letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-")


def trial_values(spec: StudySpec, budget: Budget, source: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Return the dotted config values of one trial.

    Later layers win: base, data source, budget, the budget's table for this data source, then
    the trial's overrides.
    """
    return {**spec.base, **spec.sources.get(source, {}), **budget.overrides, **budget.source_overrides.get(source, {}),
            **overrides, "data.source": source, "train.seed": seed}


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
