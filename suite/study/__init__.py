"""Optuna studies: ``python -m suite.study NAME`` runs ``studies/NAME.toml``.

Modules: ``storage`` (storages, study objects, locks), ``phases`` (search and confirmation) and
``read`` (what the report reads). A study runs in two phases inside one Optuna study. The search phase samples the study's space (TPE, random, grid or NSGA-II) with a
median pruner or none. The confirmation phase re-runs the best configuration and every baseline
with several seeds. Confirmation runs are enqueued into the same study with fixed parameters
(``Study.enqueue_trial``), so trial numbers are unique across phases. The user attribute
``phase`` (``search`` or ``confirm``) separates them, and the search-only helpers filter on it.

Every trial calls ``suite.train.train`` in this process, as a nested MLflow run under one parent
run per invocation. A worker that dies mid-trial is found by the RDB storage's heartbeat and
its trial is retried, resuming from the dead trial's last checkpoint when the config matches.
"""

from suite.study.phases import (Objective, Runner, best_search_trial, requeue_interrupted, route_optuna_logging,
                                run_study, search_counts)
from suite.study.read import param_importances, pareto_front, trials_frame
from suite.study.storage import (CONFIRM, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, _load, check_storage, check_storage_url, once,
                                 open_storage, open_study, warn_concurrent_sqlite)
from suite.studyfile import StudyError, StudySpec, load_spec
from suite.studyspec import DEFAULT_STORAGE
from suite.studytrial import TrialFailed

__all__ = ["CONFIRM", "DEFAULT_STORAGE", "GRACE_PERIOD_S", "HEARTBEAT_INTERVAL_S", "Objective", "Runner", "StudyError",
           "StudySpec", "TrialFailed", "best_search_trial", "check_storage", "check_storage_url", "load_spec", "once", "open_storage",
           "open_study", "param_importances", "pareto_front", "requeue_interrupted", "route_optuna_logging",
           "run_study", "search_counts", "trials_frame", "warn_concurrent_sqlite", "_load"]
