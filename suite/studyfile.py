"""Study files: parsing and validating ``studies/NAME.toml`` into a ``StudySpec`` (no Optuna here).

A study file contains the base run config, the search space, the baselines, the claims the study
covers and three budgets. ``docs/studies.md`` documents every key. This module is the one place
that reads them, and every error names the file and the key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from suite import config, data
from suite.studyspec import (
    BEST, BUDGETS, CLAIM_ID, DIRECTIONS, PARAM_TYPES, PRUNERS, RESERVED_FILES, SAMPLERS, SEARCH, STUDY_OWNED, Baseline,
    Budget, ClaimMapping, SearchParam, StudyError, StudySpec, source_slug, base_name, find_study_file, known_studies,
    repository_root, study_dirs, trial_values,
)

_TOP_KEYS = ("description", "data", "objectives", "directions", "base", "sources", "search", "space", "grid",
             "baselines", "confirm", "claims", "budgets")
_SEARCH_KEYS = ("sampler", "seed", "random_trials", "population_size", "pruner", "pruner_startup_trials",
                "pruner_warmup_epochs")
_CONFIRM_KEYS = ("variants", "seed_start")
_BUDGET_KEYS = ("n_trials", "seeds", "timeout", "data")
_PARAM_KEYS = ("type", "low", "high", "log", "step", "choices")
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a study file's name: no '/', no leading '.'


def load_spec(name: str) -> StudySpec:
    """Load and validate a study by name (``zpenalty``, ``modes@ring8``) or by TOML path.

    Returns:
        The validated spec. For ``NAME@SOURCE`` it is restricted to that data source, which
        must be one the file lists or a known source name.

    Raises:
        StudyError: the file is missing, is not valid TOML (the message has the line), or has
            an unknown key, a bad distribution, inverted bounds or an invalid config value.
    """
    path = find_study_file(name)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{path}: invalid TOML: {error}") from None
    spec = parse(raw, path)
    if "@" in name and not name.endswith(".toml"):
        source = name.split("@", 1)[1]
        matches = [s for s in spec.data_sources if source_slug(s) == source]
        spec = spec.for_source(matches[0] if matches else source)
    return spec


def _unknown(path: Path, where: str, keys: Any, allowed: tuple[str, ...]) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StudyError(f"{path}: unknown key {where}{key!r}{hint} (allowed: {', '.join(allowed)})")


def _expect(path: Path, key: str, value: Any, kind: type | tuple[type, ...], expected: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise StudyError(f"{path}: invalid value for {key}: {value!r}; expected {expected}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _config_keys(path: Path, where: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """Flatten a table of config overrides to dotted keys, rejecting unknown and study-owned keys."""
    resolved = {}
    for key, value in config.flatten_mapping(mapping).items():
        try:
            dotted = config.resolve_key(key)
        except config.ConfigError as error:
            raise StudyError(f"{path}: {where}: {error}") from None
        if dotted in STUDY_OWNED:
            raise StudyError(f"{path}: {where}.{key} may not be set in a study file; it is set by "
                             f"{STUDY_OWNED[dotted]}")
        resolved[dotted] = list(value) if isinstance(value, tuple) else value
    return resolved


def parse(raw: dict[str, Any], path: Path) -> StudySpec:
    """Build a validated ``StudySpec`` from a parsed study file.

    Raises:
        StudyError: as ``load_spec``.
    """
    if not SAFE_NAME.fullmatch(path.stem):
        # The name becomes a folder under outputs/studies/ and the file reports/NAME.md.
        raise StudyError(f"{path}: invalid study name {path.stem!r}; rename the file to letters, digits, '-' "
                         "and '_' followed by .toml")
    _unknown(path, "", raw, _TOP_KEYS)
    description = _expect(path, "description", raw.get("description", ""), str, "a one-line text")
    if not description.strip() or "\n" in description.strip():
        raise StudyError(f"{path}: description must be one non-empty line")
    sources = _data_sources(raw, path)
    objectives, directions = _objectives(raw, path)
    search = _expect(path, "search", raw.get("search", {}), dict, "a table")
    _unknown(path, "search.", search, _SEARCH_KEYS)
    space, grid = _space(raw, path)
    sampler = search.get("sampler", "grid" if grid and not space else "tpe")
    _choice(path, "search.sampler", sampler, SAMPLERS)
    pruner = search.get("pruner", "none" if len(objectives) > 1 else "median")
    _choice(path, "search.pruner", pruner, PRUNERS)
    if pruner != "none" and len(objectives) > 1:
        raise StudyError(f"{path}: search.pruner must be 'none' for a multi-objective study "
                         "(Optuna prunes on one reported value only)")
    if sampler == "grid" and any(key not in grid for key in space):
        raise StudyError(f"{path}: search.sampler 'grid' samples only [grid]; move "
                         f"{', '.join(k for k in space if k not in grid)} from [space] to [grid] as value lists")
    space = {**space, **{key: SearchParam(key, "categorical", choices=tuple(values)) for key, values in grid.items()}}

    baselines = _baselines(raw, path)
    confirm, variants = _confirm(raw, path, baselines)
    spec = StudySpec(
        name=path.stem, path=path, description=description.strip(), data_sources=tuple(sources),
        objectives=objectives, directions=directions, base=_config_keys(path, "base", raw.get("base", {})),
        sources=_sources(raw, path),
        sampler=sampler, sampler_seed=_int(path, "search.seed", search.get("seed", 0), 0),
        random_trials=_int(path, "search.random_trials", search.get("random_trials", 4), 0),
        population_size=_int(path, "search.population_size", search.get("population_size", 8), 2),
        pruner=pruner,
        pruner_startup_trials=_int(path, "search.pruner_startup_trials", search.get("pruner_startup_trials", 2), 0),
        pruner_warmup_epochs=_int(path, "search.pruner_warmup_epochs", search.get("pruner_warmup_epochs", 1), 0),
        space=space, grid=grid, baselines=baselines, confirm_variants=tuple(variants),
        confirm_seed_start=_int(path, "confirm.seed_start", confirm.get("seed_start", 1000), 0),
        claims=_claims(raw, path, variants),
    )
    spec.budgets = _budgets(raw, path)
    _check_configs(spec)
    return spec


def _data_sources(raw: dict[str, Any], path: Path) -> list[str]:
    sources = raw.get("data", "mnist5k")
    sources = [sources] if isinstance(sources, str) else sources
    _expect(path, "data", sources, list, "a data source name or a list of them")
    if not sources:
        raise StudyError(f"{path}: data must name at least one data source")
    for source in sources:
        try:
            data.check_source(_expect(path, "data", source, str, "data source names"))
        except config.ConfigError as error:
            raise StudyError(f"{path}: data: {error}") from None
    return sources


def _confirm(raw: dict[str, Any], path: Path, baselines: dict[str, Baseline]) -> tuple[dict[str, Any], list[str]]:
    confirm = _expect(path, "confirm", raw.get("confirm", {}), dict, "a table")
    _unknown(path, "confirm.", confirm, _CONFIRM_KEYS)
    variants = confirm.get("variants", [BEST, *baselines])
    _expect(path, "confirm.variants", variants, list, "a list of variant names")
    for variant in variants:
        if variant != BEST and variant not in baselines:
            raise StudyError(f"{path}: confirm.variants names {variant!r}, which is neither 'best' nor a "
                             f"baseline ({', '.join(baselines) or 'none defined'})")
    return confirm, variants


def _choice(path: Path, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise StudyError(f"{path}: invalid value for {key}: {value!r}; allowed: {', '.join(allowed)}")


def _int(path: Path, key: str, value: Any, minimum: int) -> int:
    _expect(path, key, value, int, f"an integer >= {minimum}")
    if value < minimum:
        raise StudyError(f"{path}: invalid value for {key}: {value}; expected an integer >= {minimum}")
    return value


def _objectives(raw: dict[str, Any], path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    objectives = raw.get("objectives")
    directions = raw.get("directions")
    if objectives is None or directions is None:
        raise StudyError(f"{path}: missing key {'objectives' if objectives is None else 'directions'}; "
                         'for example objectives = ["fid_domain"] and directions = ["minimize"]')
    for key, values in (("objectives", objectives), ("directions", directions)):
        _expect(path, key, values, list, "a non-empty list of strings")
        if not values or not all(isinstance(v, str) for v in values):
            raise StudyError(f"{path}: invalid value for {key}: {values!r}; expected a non-empty list of strings")
    if len(objectives) != len(directions):
        raise StudyError(f"{path}: objectives has {len(objectives)} entries but directions has {len(directions)}")
    known = metric_names()
    for metric in objectives:
        if metric not in known:
            close = difflib.get_close_matches(metric, sorted(known), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise StudyError(f"{path}: objectives: unknown metric {metric!r}{hint} (see suite/metrics/keys.py)")
    for direction in directions:
        _choice(path, "directions", direction, DIRECTIONS)
    return tuple(objectives), tuple(directions)


def metric_names() -> set[str]:
    """Return every evaluation metric key a study may optimise (suite.metrics.keys)."""
    from suite.metrics import keys

    per_extractor = (keys.FID, keys.KID_MEAN, keys.IS_MEAN, keys.PRECISION, keys.RECALL, keys.F_SCORE,
                     keys.FID_REC, keys.KID_REC_MEAN, keys.FEATURE_VAR_REL)
    names = {keys.with_extractor(name, extractor) for name in per_extractor for extractor in keys.EXTRACTOR_SHORT_NAMES}
    names |= {keys.MODES, keys.MODES_KL, keys.HQ_SHARE, keys.SHARPNESS_REL, keys.SHARPNESS_REL_REC,
              keys.SAMPLE_VAR_REL, keys.RECON_ERROR, keys.D_ACC_REAL, keys.D_ACC_FAKE, keys.D_ACC_REC}
    return names | {keys.code_norm_key(stat) for stat in keys.CODE_NORM_STATS}


def _space(raw: dict[str, Any], path: Path) -> tuple[dict[str, SearchParam], dict[str, tuple[Any, ...]]]:
    space: dict[str, SearchParam] = {}
    for key, table in _distribution_tables(_expect(path, "space", raw.get("space", {}), dict, "a table")).items():
        where = f"space.{key}"
        dotted = _resolve(path, where, key)
        space[dotted] = _param(path, where, dotted, table)
    grid: dict[str, tuple[Any, ...]] = {}
    for key, values in config.flatten_mapping(_expect(path, "grid", raw.get("grid", {}), dict, "a table")).items():
        dotted = _resolve(path, f"grid.{key}", key)
        if not isinstance(values, list) or not values:
            raise StudyError(f"{path}: invalid value for grid.{key}: {values!r}; expected a non-empty list of values")
        if dotted in space:
            raise StudyError(f"{path}: {dotted} is in both [space] and [grid]; keep one")
        grid[dotted] = tuple(values)
    return space, grid


def _distribution_tables(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten [space]: a table with a ``type`` key is a distribution, others are key prefixes."""
    found = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and "type" not in value and all(isinstance(v, dict) for v in value.values()):
            found.update(_distribution_tables(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def _resolve(path: Path, where: str, key: str) -> str:
    try:
        dotted = config.resolve_key(key)
    except config.ConfigError as error:
        raise StudyError(f"{path}: {where}: {error}") from None
    if dotted in STUDY_OWNED:
        raise StudyError(f"{path}: {where} may not be searched; it is set by {STUDY_OWNED[dotted]}")
    return dotted


def _param(path: Path, where: str, dotted: str, table: Any) -> SearchParam:
    """Validate one distribution table; inverted bounds and log ranges through 0 are errors."""
    if not isinstance(table, dict):
        raise StudyError(f"{path}: invalid distribution for {where}: {table!r}; expected a table such as "
                         "{ type = \"float\", low = 1e-4, high = 10.0, log = true }")
    _unknown(path, f"{where}.", table, _PARAM_KEYS)
    kind = table.get("type")
    if kind not in PARAM_TYPES:
        raise StudyError(f"{path}: invalid distribution for {where}: type {kind!r}; allowed: {', '.join(PARAM_TYPES)}")

    if kind == "categorical":
        extra = [k for k in table if k not in ("type", "choices")]
        choices = table.get("choices")
        if extra or not isinstance(choices, list) or not choices:
            found = f" (found {', '.join(extra)})" if extra else ""
            raise StudyError(f"{path}: invalid distribution for {where}: a categorical needs a non-empty "
                             f"`choices` list and nothing else{found}")
        return SearchParam(dotted, kind, choices=tuple(choices))

    number = int if kind == "int" else (int, float)
    expected = "an integer" if kind == "int" else "a number"
    if "low" not in table or "high" not in table:
        raise StudyError(f"{path}: invalid distribution for {where}: {kind} needs `low` and `high`")
    low = _expect(path, f"{where}.low", table["low"], number, expected)
    high = _expect(path, f"{where}.high", table["high"], number, expected)
    log = _expect(path, f"{where}.log", table.get("log", False), bool, "true or false")
    step = table.get("step")
    if low > high:
        raise StudyError(f"{path}: inverted bounds for {where}: low {low} is above high {high}")
    if log and low <= 0:
        raise StudyError(f"{path}: invalid distribution for {where}: a log scale needs low > 0, got {low}")
    if step is not None:
        _expect(path, f"{where}.step", step, number, "a positive number")
        if step <= 0 or log:
            raise StudyError(f"{path}: invalid distribution for {where}: step must be > 0 and cannot be "
                             "combined with log = true")

    if kind == "float":
        low, high = float(low), float(high)
    return SearchParam(dotted, kind, low, high, log, step)


def _sources(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    sources = {}
    for source, table in _expect(path, "sources", raw.get("sources", {}), dict, "a table of tables").items():
        try:
            data.check_source(source)
        except config.ConfigError as error:
            raise StudyError(f"{path}: sources.{source}: {error}") from None
        _expect(path, f"sources.{source}", table, dict, "a table of config overrides")
        sources[source] = _config_keys(path, f"sources.{source}", table)
    return sources


def _baselines(raw: dict[str, Any], path: Path) -> dict[str, Baseline]:
    baselines = {}
    for name, table in _expect(path, "baselines", raw.get("baselines", {}), dict, "a table of tables").items():
        if name in (BEST, SEARCH):
            raise StudyError(f"{path}: baselines.{name}: {name!r} is reserved; choose another baseline name")
        _expect(path, f"baselines.{name}", table, dict, "a table of config overrides")
        table = dict(table)
        best_of = _expect(path, f"baselines.{name}.best_of", table.pop("best_of", ""), str, "a study name")
        baselines[name] = Baseline(name, _config_keys(path, f"baselines.{name}", table), best_of)
    return baselines


def _claims(raw: dict[str, Any], path: Path, variants: list[str]) -> dict[str, ClaimMapping]:
    claims = {}
    for claim, table in _expect(path, "claims", raw.get("claims", {}), dict, "a table").items():
        if not CLAIM_ID.fullmatch(claim):
            raise StudyError(f"{path}: unknown claim id claims.{claim}; claims are C1 to C8")
        _expect(path, f"claims.{claim}", table, dict, '{ treatment = "best", control = "<baseline>" }')
        _unknown(path, f"claims.{claim}.", table, ("treatment", "control"))
        if "treatment" not in table:
            raise StudyError(f"{path}: claims.{claim} needs a treatment variant")
        for role in ("treatment", "control"):
            value = table.get(role, "")
            if role in table and value not in variants:
                raise StudyError(f"{path}: claims.{claim}.{role} = {value!r} is not a confirmation variant "
                                 f"({', '.join(variants)})")
        claims[claim] = ClaimMapping(table["treatment"], table.get("control", ""))
    return claims


def _budgets(raw: dict[str, Any], path: Path) -> dict[str, Budget]:
    budgets = {}
    tables = _expect(path, "budgets", raw.get("budgets", {}), dict, "a table of budget tables")
    _unknown(path, "budgets.", tables, BUDGETS)
    for name, table in tables.items():
        where = f"budgets.{name}"
        _expect(path, where, table, dict, "a table")
        table = dict(table)
        counts = {key: table.pop(key) for key in _BUDGET_KEYS if key in table}
        per_source = _budget_sources(raw, path, where, table.pop("sources", {}))
        timeout = _expect(path, f"{where}.timeout", counts.get("timeout", 0), (int, float), "seconds (0: none)")
        if timeout < 0:
            raise StudyError(f"{path}: invalid value for {where}.timeout: {timeout}; expected seconds >= 0")
        budgets[name] = Budget(
            name=name, n_trials=_int(path, f"{where}.n_trials", counts.get("n_trials", 10), 0),
            seeds=_int(path, f"{where}.seeds", counts.get("seeds", 3), 1), timeout=float(timeout),
            overrides=_config_keys(path, where, table), source_overrides=per_source,
            data=_budget_data(raw, path, where, counts.get("data")),
        )
    return budgets


def _budget_data(raw: dict[str, Any], path: Path, where: str, value: Any) -> tuple[str, ...]:
    """Parse a budget's ``data``: the study's sources it runs (all when absent)."""
    if value is None:
        return ()
    _expect(path, f"{where}.data", value, list, "a list of the study's data sources")
    known = _data_sources(raw, path)
    unknown = [source for source in value if source not in known]
    if unknown or not value:
        raise StudyError(f"{path}: invalid value for {where}.data: {value!r}; expected a non-empty list of the "
                         f"study's data sources {known}")
    return tuple(value)


def _budget_sources(raw: dict[str, Any], path: Path, where: str, tables: Any) -> dict[str, dict[str, Any]]:
    """Parse ``[budgets.NAME.sources.SOURCE]``: overrides of one budget for one of the study's sources."""
    _expect(path, f"{where}.sources", tables, dict, "a table of tables, one per data source")
    known = _data_sources(raw, path)
    found = {}
    for source, table in tables.items():
        if source not in known:
            raise StudyError(f"{path}: {where}.sources.{source}: {source!r} is not a data source of this study; "
                             f"expected one of {known}")
        found[source] = _config_keys(path, f"{where}.sources.{source}", _expect(
            path, f"{where}.sources.{source}", table, dict, "a table of config overrides"))
    return found


def _check_configs(spec: StudySpec) -> None:
    """Build every config a trial can get (bounds and choices included) so that bad values fail now."""
    for budget in spec.budgets.values() or [Budget("none", 0, 1, 0.0, {})]:
        for source in spec.data_sources:
            where = f"{spec.path}: budget {budget.name}, data {source}"
            base = trial_values(spec, budget, source, {}, seed=0)
            if not base.get("eval.enabled", True):
                raise StudyError(f"{where}: eval.enabled must stay true; trials are scored on evaluation metrics")
            cases = [("base", {})] + [(f"baselines.{b.name}", b.overrides) for b in spec.baselines.values()]
            for key, param in spec.space.items():
                values = param.choices if param.type == "categorical" else (param.low, param.high)
                cases += [(f"space.{key}", {key: value}) for value in values]
            for label, overrides in cases:
                try:
                    config.from_flat(trial_values(spec, budget, source, overrides, seed=0))
                except config.ConfigError as error:
                    raise StudyError(f"{where}, {label}: {error}") from None


__all__ = [
    "BEST", "BUDGETS", "RESERVED_FILES", "SEARCH", "STUDY_OWNED", "Baseline", "Budget", "ClaimMapping", "SearchParam",
    "StudyError", "StudySpec", "base_name", "find_study_file", "known_studies", "load_spec", "metric_names", "parse",
    "repository_root", "study_dirs", "trial_values",
]
