"""Study reports: MLflow runs (and Optuna's search record) to ``reports/NAME.md`` with plots.

``write_report`` reads one study's runs from MLflow, decides a verdict on every claim the study
covers with the rules of ``studies/claims.toml``, and writes ``reports/NAME.md`` with its PNG
images and ``runs.csv`` (every run, param and final metric) in ``reports/NAME/``.
``python -m suite.report NAME`` does the same from the command line. Apart from the line that
starts with ``Generated:``, the same store gives the same files.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from suite import tracking
from suite.report import artifacts, claims, document, figures, runs, study_info, tables, text, verdicts
from suite.report.runs import Configuration, StudyRuns
from suite.report.study_info import StudyApi, StudyInfo

log = logging.getLogger(__name__)

# A study file's name, optionally with "@<data source>" as ``suite.study`` names one of several
# sources. Neither part can contain "/", and the name cannot start with ".", so every report
# stays inside the output folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+(@[A-Za-z0-9_.-]+)?")
SEARCH_ROWS = 20           # rows of the search-phase table; runs.csv has all of them
CURVE_CONFIGS = 5          # search configurations drawn when the study has no confirmation runs
GENERATED_FILES = ("*.png", "runs.csv")


def check_name(name: str) -> str:
    """Return ``name`` when it is a safe report name.

    Raises:
        ValueError: the name has characters other than letters, digits, ``-``, ``_`` and one
            ``@<source>`` part (letters, digits, ``.``, ``-``, ``_``).
    """
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"invalid study name {name!r}: use letters, digits, '-' and '_' "
                         "(plus '@<data source>' for one source of a study)")
    return name


def _history_reader(uri: str | None) -> Callable[[str, str], list[tuple[int, float]]]:
    cache: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def read(run_id: str, key: str) -> list[tuple[int, float]]:
        if (run_id, key) not in cache:
            cache[run_id, key] = tracking.metric_history(run_id, key, uri)
        return cache[run_id, key]

    return read


def _add_train_seconds(configs: list[Configuration], read) -> None:
    for config in configs:
        seconds = []
        for run_id in config.run_ids:
            history = read(run_id, "epoch_seconds")
            seconds.append(sum(v for _, v in history) if history else float("nan"))
        config.runs[tables.TRAIN_SECONDS] = seconds


def _phase(study: StudyRuns, info: StudyInfo, phase: str, read) -> tuple[list[Configuration], list[str]]:
    """Group, order and describe one phase; return the configurations in its table and its section lines."""
    configs = runs.configurations(study.frame, phase)
    columns = tables.metric_columns(configs)
    sort_by, better = tables.sort_column(columns, info.objectives)
    configs = tables.order(configs, sort_by, better)
    extra = []
    if phase == "search" and len(configs) > SEARCH_ROWS:
        extra.append(f"{len(configs) - SEARCH_ROWS} more search configurations are in runs.csv")
        configs = configs[:SEARCH_ROWS]
        columns = tables.metric_columns(configs)  # only the columns that the kept rows logged
    if sort_by is not None:
        extra.append(f"rows are ordered by {sort_by.title}, {better} first")
    extra += [f"{c.label}: older runs of a seed that was run again were left out: {', '.join(c.duplicates)}"
              for c in configs if c.duplicates]
    _add_train_seconds(configs, read)
    if configs:
        columns.append(tables.Column(tables.TRAIN_SECONDS, None, "training time s (sum of epoch_seconds)", "lower"))
    table = tables.metrics_table(configs, columns) if configs else []
    params = runs.varying_params(configs)
    return configs, document.phase_section(phase, table, tables.config_table(configs, params), extra)


def _verdicts(study: StudyRuns, info: StudyInfo, defined: dict[str, claims.Claim], configs, read):
    covered = info.spec.claim_ids if info.spec else sorted(
        {c.strip() for p in study.parents for c in p["tags"].get("claims", "").split(",") if c.strip()})
    variants = info.claim_variants()
    found = [verdicts.evaluate(defined[cid], variants.get(cid, {}), configs, read) for cid in covered if cid in defined]
    return found, [cid for cid in covered if cid not in defined]


def _featured(confirm: list[Configuration], search: list[Configuration]) -> list[Configuration]:
    """Return the configurations for plots and images: best first, then the baselines by name."""
    if not confirm:
        return search[:CURVE_CONFIGS]
    best = [c for c in confirm if c.variant == "best"]
    return best + sorted((c for c in confirm if c.variant != "best"), key=lambda c: c.label)


def _clean(folder: Path) -> None:
    """Remove the files an earlier build wrote, so that no stale image survives."""
    for pattern in GENERATED_FILES:
        for path in sorted(folder.glob(pattern)):
            path.unlink()


def write_report(name: str, tracking_uri: str | None = None, storage: str | None = None,
                 out_dir: str | Path = "reports", *, budget: str | None = None,
                 study_api: StudyApi | None = None, claims_file: str | Path = claims.CLAIMS_FILE,
                 now: datetime.datetime | None = None) -> Path:
    """Write ``out_dir/NAME.md``, its images and ``runs.csv`` from the study's MLflow runs.

    Args:
        name: the study name, which is also the MLflow experiment name.
        tracking_uri: the MLflow tracking URI; None uses MLflow's default.
        storage: the Optuna storage URL; None leaves out the Optuna plots, with a note.
        out_dir: the folder of reports.
        budget: the budget to report; None takes the budget of the latest study invocation.
        study_api: the object that provides ``load_spec``, ``trials_frame``, ``param_importances``
            and ``pareto_front``; None uses ``suite.study``.
        claims_file: the claim definitions.
        now: the time stamped on the report; None uses the current time.

    Returns:
        The path of the markdown file.

    Raises:
        ValueError: an unsafe name, or a budget the study has no runs of.
        tracking.ExperimentNotFound: MLflow has no experiment of that name.
        claims.ClaimsError: an invalid claims file.
    """
    check_name(name)
    study = runs.load(name, tracking_uri, budget)
    info = study_info.load(name, storage, study_api)
    defined = claims.load_claims(claims_file)
    out_dir = Path(out_dir)
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    _clean(folder)
    read = _history_reader(tracking_uri)

    search, search_lines = _phase(study, info, "search", read)
    confirm, confirm_lines = _phase(study, info, "confirm", read)
    found, undefined = _verdicts(study, info, defined, confirm, read)
    featured = _featured(confirm, search)
    params = info.searched_params or runs.varying_params(runs.configurations(study.frame, "search"))
    built = [
        figures.objective_vs_params(study.frame, info, params, folder),
        figures.training_curves(featured, read, folder),
        figures.radius_sweep(featured, folder),
        figures.d_accuracy(featured, folder),
        figures.optuna_history(info, folder),
        figures.optuna_importances(info, folder),
        figures.pareto_front(info, folder),
    ]
    runs.runs_csv(study.frame).to_csv(folder / "runs.csv", index=False)

    lines = document.header(study, info, now) + document.notes(info.notes)
    lines += document.verdicts(found, undefined, defined)
    lines += ["## Results", ""] + search_lines + confirm_lines + document.incomplete(study.frame)
    lines += document.figures(name, [f for f in built if isinstance(f, figures.Figure)],
                              [f for f in built if isinstance(f, str)])
    lines += document.images(name, artifacts.fetch(featured, folder, tracking_uri))
    lines += document.reproduce(name, study.budget, tracking_uri, storage)
    path = out_dir / f"{name}.md"
    partial = path.with_suffix(".md.partial")
    partial.write_text("\n".join(lines).rstrip("\n") + "\n")
    os.replace(partial, path)
    log.info("wrote %s (%s, %s)", path, text.plural(len(study.frame), "trial run"), text.plural(len(found), "verdict"))
    return path


__all__ = ["NAME_PATTERN", "check_name", "write_report"]
