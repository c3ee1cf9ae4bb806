"""``python -m suite.report NAME``: regenerate a study's report from MLflow."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from suite import tracking
from suite.report import claims, write_report

log = logging.getLogger("suite.report")

DEFAULT_STORAGE_FILE = Path("optuna.db")  # the Optuna storage that `python -m suite.study` uses by default


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m suite.report``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m suite.report",
        description="Write reports/NAME.md (verdicts, tables, plots, images) and reports/NAME/runs.csv "
                    "from the MLflow runs of study NAME.",
    )
    parser.add_argument("name", metavar="NAME", help="study name (the MLflow experiment), e.g. zpenalty")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's, sqlite:///mlflow.db here)")
    parser.add_argument("--storage", help="Optuna storage URL for the optimisation history, importances and "
                        "Pareto front (default: sqlite:///optuna.db when ./optuna.db exists, else none)")
    parser.add_argument("--budget", help="budget to report: smoke, quick or full (default: the latest invocation's)")
    parser.add_argument("--out-dir", default="reports", help="folder of reports (default: reports)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    storage = args.storage
    if storage is None and DEFAULT_STORAGE_FILE.is_file():
        storage = f"sqlite:///{DEFAULT_STORAGE_FILE}"
    try:
        tracking.check_reachable(args.tracking_uri)
    except RuntimeError as error:
        log.error("%s", error)
        return 1
    try:
        path = write_report(args.name, args.tracking_uri, storage, args.out_dir, budget=args.budget)
    except (ValueError, tracking.ExperimentNotFound, claims.ClaimsError) as error:
        log.error("%s", error)
        return 2
    log.info("report written to %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
