"""The command line of ``python -m suite.study``: options, ``--list``, ``--dry-run`` and the report.

The Optuna work itself is in ``suite.study``; this module parses options, prints plans and
calls it once per data source of the study.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

from suite import checkpoint, config, data, studyfile, studyplan, tracking, train
from suite.studyfile import BUDGETS, StudyError, StudySpec
from suite.studyspec import DEFAULT_STORAGE

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m suite.study``."""
    parser = argparse.ArgumentParser(
        prog="python -m suite.study",
        description="Run (or resume) an ablation study defined in studies/NAME.toml: an Optuna search, "
        "then confirmation runs with several seeds, every trial tracked in MLflow, then reports/NAME.md.",
        epilog="The study file format is documented in docs/studies.md. Rerunning the same command resumes "
        "the study without repeating finished trials.",
    )

    parser.add_argument("name", nargs="?", help="study name (a file in ./studies or the package's studies/) "
                        "or a path to a study TOML file")
    parser.add_argument("--budget", choices=BUDGETS, default="quick",
                        help="smoke: seconds, for tests; quick: a 2-core CPU; full: a GPU (default: quick)")
    parser.add_argument("--n-trials", type=int, metavar="N", help="search trials to finish (default: the budget's)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="start no new search trial after this many seconds (default: the budget's; 0: none)")
    parser.add_argument("--data", metavar="SOURCE", help="data source for every trial instead of the study's "
                        "(mnist5k, stacked-mnist, ring8, grid25, ..., imagefolder:PATH); the study is then "
                        "stored as NAME@SOURCE")

    parser.add_argument("--device", choices=config.DEVICES, help="train.device of every trial (default: auto)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of torch in this process (torch.set_num_threads; default: torch's, one per "
                        "core). 1 is much faster on a CPU that other processes share, and for several workers on one "
                        "machine")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage: an SQLAlchemy URL (sqlite:///..., postgresql://...) or journal:PATH "
                        "(default: sqlite:///optuna.db in the working folder)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: MLflow's, "
                        "sqlite:///mlflow.db in the working folder)")

    parser.add_argument("--list", action="store_true", help="list every study with its description and claims")
    parser.add_argument("--dry-run", action="store_true", help="print the planned trials and an estimate of their "
                        "cost; run nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write reports/NAME.md at the end")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (hidden anyway when stderr is not a terminal)")
    return parser


def list_studies() -> list[str]:
    """Return one line per known study: name, claims and description (or the error of an invalid file)."""
    lines = []
    for name, path in studyfile.known_studies().items():
        try:
            spec = studyfile.load_spec(str(path))
        except StudyError as error:
            lines.append(f"{name:<10} INVALID: {error}")
            continue
        lines.append(f"{name:<10} {','.join(spec.claim_ids):<12} {spec.description}")
    return lines


def sub_studies(spec: StudySpec, data: str | None, budget: str | None = None) -> list[StudySpec]:
    """Return the study restricted to each data source it runs on.

    ``--data`` replaces the list; otherwise a budget's ``data`` list picks from it.

    Raises:
        StudyError: ``--data`` names an unknown source.
    """
    if data is None:
        chosen = spec.budgets[budget].data if budget in spec.budgets else ()
        return [spec.for_source(source) for source in spec.data_sources if not chosen or source in chosen]
    try:
        config.from_flat(studyfile.trial_values(spec, next(iter(spec.budgets.values()), studyfile.Budget(
            "none", 0, 1, 0.0, {})), data, {}, seed=0))
    except config.ConfigError as error:
        raise StudyError(f"--data {data}: {error}") from None
    return [spec.for_source(data)]


def write_report(name: str, tracking_uri: str | None, storage: str) -> None:
    """Write ``reports/NAME.md`` with ``suite.report.write_report``."""
    from suite import report  # imported here: matplotlib and the report code are not needed before the end

    path = report.write_report(name, tracking_uri=tracking_uri, storage=storage)
    log.info("report written: %s", path)


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m suite.study``; returns the exit status (2 for an invalid study or option)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.list:
        print("\n".join(list_studies()))
        return 0
    if not args.name:
        known = ", ".join(studyfile.known_studies()) or "none"
        log.error("missing study name; known studies: %s (or --list)", known)
        return 2
    storage = args.storage or DEFAULT_STORAGE
    try:
        spec = studyfile.load_spec(args.name)
        spec.budget(args.budget)
        specs = sub_studies(spec, args.data, args.budget)
        if args.n_trials is not None and args.n_trials < 0:
            raise StudyError(f"invalid value for --n-trials: {args.n_trials}; expected an integer >= 0")
        if args.threads is not None and args.threads < 1:
            raise StudyError(f"invalid value for --threads: {args.threads}; expected an integer >= 1")
        if args.device and not args.dry_run:
            train.resolve_device(args.device)
    except (StudyError, config.ConfigError) as error:
        log.error("%s", error)
        return 2
    if args.dry_run:
        from suite.study import check_storage_url

        try:
            check_storage_url(storage)
        except StudyError as error:
            log.error("%s", error)
            return 2
        for sub in specs:
            print("\n".join(studyplan.describe(sub, args.budget, args.n_trials, args.timeout, storage,
                                               args.tracking_uri, args.device)))
        return 0
    return _run(specs, args, storage)


def _run(specs: list[StudySpec], args: argparse.Namespace, storage: str) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from suite import study
    from suite.metrics.modes import SampleCountError

    study.route_optuna_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    train.stop_on_sigterm()  # SIGTERM (kill, a batch system) ends the trial like Ctrl-C: marked, resumable
    started = time.monotonic()
    try:
        study.check_storage(storage)
        tracking.check_reachable(args.tracking_uri)
    except (RuntimeError, StudyError) as error:
        log.error("%s", error)
        return 1
    try:
        with logging_redirect_tqdm():
            for spec in specs:
                log.info("study %s (budget %s, data %s): %s", spec.name, args.budget, spec.data_sources[0],
                         spec.description)
                study.run_study(spec, args.budget, storage, args.tracking_uri, args.device, args.n_trials,
                                args.timeout, progress=not args.no_progress and sys.stderr.isatty())
                if not args.no_report:
                    write_report(spec.name, args.tracking_uri, storage)
    except KeyboardInterrupt:
        log.error("interrupted; rerun the same command to resume the study")
        return 130
    except (StudyError, config.ConfigError, SampleCountError) as error:
        log.error("%s", error)
        return 2
    except (data.DataUnavailableError, checkpoint.CheckpointError) as error:
        log.error("%s", error)
        return 1
    log.info("study finished in %.0f s; browse the trials with: %s", time.monotonic() - started,
             tracking.ui_command(args.tracking_uri))
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["build_parser", "list_studies", "main", "sub_studies", "write_report"]
