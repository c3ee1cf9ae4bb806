"""Optuna storages and study objects: opening, locking, heartbeats, samplers and pruners.

Storages are RDB URLs (SQLite on one machine, PostgreSQL for many) or ``journal:PATH``. Every
RDB storage is opened with a heartbeat, so that a trial whose worker died is failed and retried.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from suite.studyfile import SEARCH, StudyError, StudySpec

log = logging.getLogger(__name__)

CONFIRM = "confirm"
# A running trial writes a heartbeat this often; one without a heartbeat for the grace period is
# failed and retried. The environment variables shorten both for tests and for quick restarts.
# A trial whose worker wrote no heartbeat for GRACE_PERIOD_S seconds counts as dead and is retried.
HEARTBEAT_INTERVAL_S = int(os.environ.get("AEGAN_SUITE_HEARTBEAT_S", "10"))
GRACE_PERIOD_S = int(os.environ.get("AEGAN_SUITE_GRACE_PERIOD_S", "30"))
SCHEMA_ATTEMPTS = 3  # tries to open a new RDB storage that other workers are creating at the same time
MAX_RETRIES = 2  # retries of one trial whose worker died or was interrupted
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: an RDB URL (heartbeat and retries on) or ``journal:PATH``.

    The RDB storage fails a running trial whose heartbeat stopped for ``GRACE_PERIOD_S`` and
    enqueues a copy of it (``RetryHeartbeatStaleTrialCallback``), which the next trial of any
    worker picks up. The journal file storage has no heartbeat, so a dead worker's trial stays
    RUNNING there.
    """
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are experimental since Optuna 2.9
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        return _open_rdb(url, retry)


def _open_rdb(url: str, retry: RetryHeartbeatStaleTrialCallback) -> RDBStorage:
    """Open the RDB storage with heartbeats, retrying while other workers create its tables."""
    for attempt in range(1, SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
                              heartbeat_stale_trial_callback=retry)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers that start together on a new database all create Optuna's tables. The losers
            # of that race get "duplicate key", and on a retry the tables exist.
            time.sleep(attempt)
    return RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
                      heartbeat_stale_trial_callback=retry)


def check_storage(url: str) -> None:
    """Open the storage once so that a bad URL or an unreachable database fails before any training.

    Raises:
        StudyError: the URL is malformed or the database cannot be reached; the message names the
            URL and the accepted forms.
    """
    try:
        storage = open_storage(url)
        if isinstance(storage, RDBStorage):
            storage.get_all_studies()
    except Exception as error:  # SQLAlchemy, the database driver and Optuna raise many types here
        raise StudyError(_storage_message(url, error)) from None


def check_storage_url(url: str) -> None:
    """Check the form of a storage URL without connecting or creating anything (for ``--dry-run``).

    Raises:
        StudyError: the URL is malformed, names an unknown database driver, or a journal file in
            a folder that does not exist.
    """
    try:
        if url.startswith("journal:"):
            folder = Path(url.removeprefix("journal:")).expanduser().parent
            if not url.removeprefix("journal:") or not folder.is_dir():
                raise ValueError(f"the journal file's folder {str(folder)!r} does not exist")
        else:
            sqlalchemy.engine.make_url(url).get_dialect()
    except Exception as error:  # SQLAlchemy raises ArgumentError, NoSuchModuleError, ValueError and more
        raise StudyError(_storage_message(url, error)) from None


def _storage_message(url: str, error: BaseException) -> str:
    return (f"Optuna storage {url!r} cannot be opened ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "pass --storage sqlite:///optuna.db (one machine), "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE (many workers) or journal:PATH")


def warn_concurrent_sqlite(study: optuna.Study, url: str) -> None:
    """Warn when another worker runs a trial of this study on an SQLite storage.

    A RUNNING trial whose heartbeat is not stale belongs to a live worker (this worker has not
    started one yet). SQLite locks the whole file on every write, so several workers wait on
    each other and can fail with "database is locked".
    """
    if not url.startswith("sqlite:"):
        return
    stale_ids = getattr(study._storage, "_get_stale_trial_ids", None)  # RDB storages, also behind Optuna's cache
    stale = set(stale_ids(study._study_id)) if stale_ids else set()
    live = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t._trial_id not in stale]
    if live:
        log.warning("%s: trials %s are running in another worker on the SQLite storage %s, or their worker died "
                    "less than %d s ago; this run waits for them and retries a dead worker's trials from their "
                    "checkpoints. For several workers, use one PostgreSQL database: --storage "
                    "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE (see 'Running on many machines' in "
                    "README.md)", study.study_name, live, url, GRACE_PERIOD_S)


def _storage_exists(url: str) -> bool:
    """Return False for a SQLite or journal file that does not exist (opening would create it)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix)).is_file()
    return True


def _load(name: str, storage: str) -> optuna.Study:
    """Load an existing study without creating anything.

    Raises:
        StudyError: the storage or the study does not exist.
    """
    if not _storage_exists(storage):
        raise StudyError(f"no Optuna storage at {storage}; run `python -m suite.study {name}` first")
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        raise StudyError(f"no study {name!r} in {storage}") from None


def make_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Return the study's sampler, seeded with ``seed``."""
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({k: list(v) for k, v in spec.grid.items()}, seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=spec.random_trials, seed=seed)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Return the study's pruner; steps are epochs."""
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.pruner_startup_trials,
                                           n_warmup_steps=spec.pruner_warmup_epochs)
    return optuna.pruners.NopPruner()


def open_study(spec: StudySpec, budget: str, storage: str) -> optuna.Study:
    """Create the study, or load it to resume; refuse a stored study of other objectives or budget.

    The sampler's seed is the study's seed plus the number of trials already stored, so a
    resumed study draws new points instead of repeating the first ones.

    Raises:
        StudyError: the stored study has other objectives, directions, budget or data source.
    """
    opened = open_storage(storage)
    study = optuna.create_study(study_name=spec.name, storage=opened, directions=list(spec.directions),
                                pruner=make_pruner(spec), load_if_exists=True)
    expected = {"objectives": list(spec.objectives), "directions": list(spec.directions), "budget": budget,
                "data_source": spec.data_sources[0]}
    stored = study.user_attrs
    for key, value in expected.items():
        if key in stored and stored[key] != value:
            raise StudyError(
                f"study {spec.name!r} in {storage} was run with {key} {stored[key]!r}, not {value!r}; rerun with "
                f"the same settings to resume it, or pass --storage and --tracking-uri of fresh stores")
        study.set_user_attr(key, value)
    study.set_user_attr("study_file", str(spec.path))
    study.sampler = make_sampler(spec, spec.sampler_seed + len(study.trials))
    if spec.sampler == "grid":
        with once(study, opened, "grid") as owner:
            if owner:
                enqueue_grid(study, spec)
    return study


LOCK_WAIT_S = 120.0  # how long a worker waits for another worker's enqueueing to finish


class once:
    """Let exactly one of many workers run a block, and make the others wait until it is done.

    Creating a study under a derived name is atomic in every Optuna storage (a unique key), so
    the worker whose ``create_study`` succeeds is the owner. The owner marks the work done in a
    user attribute on exit; the others poll that attribute for up to ``LOCK_WAIT_S`` seconds.
    """

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage | str, task: str):
        self.study, self.storage, self.task = study, storage, task
        self.done_key = f"{task}_enqueued"

    def __enter__(self) -> bool:
        if self.study.user_attrs.get(self.done_key):
            return False
        try:
            optuna.create_study(study_name=f"{self.study.study_name}#{self.task}-lock", storage=self.storage)
        except optuna.exceptions.DuplicatedStudyError:
            self._wait()
            return False
        self.owner = True
        return True

    def __exit__(self, kind, error, traceback) -> None:
        if getattr(self, "owner", False) and error is None:
            self.study.set_user_attr(self.done_key, True)

    def _wait(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not self.study.user_attrs.get(self.done_key):
            if time.monotonic() > deadline:
                log.warning("%s: another worker started enqueueing %s trials and did not finish within %.0f s; "
                            "going on without them", self.study.study_name, self.task, LOCK_WAIT_S)
                return
            time.sleep(0.5)


def enqueue_grid(study: optuna.Study, spec: StudySpec) -> None:
    """Enqueue every grid point once, so that workers take points from the queue and none runs twice.

    GridSampler alone lets workers that start together pick the same point, because each reads
    the points taken so far before any of them has stored its pick.
    """
    import itertools

    keys = list(spec.grid)
    for values in itertools.product(*(spec.grid[key] for key in keys)):
        study.enqueue_trial(dict(zip(keys, values)), user_attrs={"phase": SEARCH})


def _phase(trial: FrozenTrial) -> str:
    return trial.user_attrs.get("phase", SEARCH)



__all__ = ["CONFIRM", "DONE_STATES", "GRACE_PERIOD_S", "HEARTBEAT_INTERVAL_S", "MAX_RETRIES", "check_storage", "check_storage_url",
           "enqueue_grid", "make_pruner", "make_sampler", "once", "open_storage", "open_study",
           "warn_concurrent_sqlite"]
