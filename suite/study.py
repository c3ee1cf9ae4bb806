"""Optuna studies: ``python -m suite.study NAME`` runs ``studies/NAME.toml``.

This is the only module of the suite that imports optuna. A study runs in two phases inside one
Optuna study. The search phase samples the study's space (TPE, random, grid or NSGA-II) with a
median pruner or none. The confirmation phase re-runs the best configuration and every baseline
with several seeds. Confirmation runs are enqueued into the same study with fixed parameters
(``Study.enqueue_trial``), so trial numbers are unique across phases. The user attribute
``phase`` (``search`` or ``confirm``) separates them, and the search-only helpers below filter
on it.

Every trial calls ``suite.train.train`` in this process, as a nested MLflow run under one parent
run per invocation. A worker that dies mid-trial is found by the RDB storage's heartbeat and
its trial is retried, resuming from the dead trial's last checkpoint when the config matches.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from suite import tracking
from suite.studyfile import BEST, SEARCH, StudyError, StudySpec, load_spec
from suite.studyspec import DEFAULT_STORAGE
from suite.studytrial import TrialFailed, TrialRequest, TrialRunner

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


# ----------------------------------------------------------------------------------------------
# Storage and study


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
        raise StudyError(
            f"Optuna storage {url!r} cannot be opened ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "pass --storage sqlite:///optuna.db (one machine), "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE (many workers) or journal:PATH") from None


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
        log.warning("%s: trials %s are running in another worker on the SQLite storage %s; for several workers "
                    "use one PostgreSQL database: --storage postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE "
                    "(see 'Running on many machines' in README.md). If no other worker runs, their worker died "
                    "less than %d s ago: wait that long and rerun, and they are retried from their checkpoints",
                    study.study_name, live, url, GRACE_PERIOD_S)


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


def search_counts(study: optuna.Study) -> tuple[int, int]:
    """Return (finished, pending) search trials.

    Finished: complete, pruned, or failed with a recorded reason. Pending: running, or waiting
    in the queue (a retry). A failed trial without a reason died or was interrupted and gets a
    retry instead.
    """
    finished = pending = 0
    for trial in study.get_trials(deepcopy=False):
        if _phase(trial) != SEARCH:
            continue
        if trial.state in DONE_STATES or (trial.state == TrialState.FAIL and "failure_reason" in trial.user_attrs):
            finished += 1
        elif trial.state in (TrialState.RUNNING, TrialState.WAITING):
            pending += 1
    return finished, pending


def requeue_interrupted(study: optuna.Study) -> None:
    """Enqueue a retry of every trial that failed without a reason (interrupted) and has none yet."""
    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    for trial in trials:
        if trial.state != TrialState.FAIL or "failure_reason" in trial.user_attrs or trial.number in retried:
            continue
        if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRIES:
            continue  # retried often enough; it stays failed and the search samples a new trial
        log.info("trial %d was interrupted; it is queued again and resumes from its checkpoint", trial.number)
        retry(study, trial)


def best_search_trial(study: optuna.Study) -> FrozenTrial | None:
    """Return the best complete search trial (multi-objective: the best on the first objective)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _phase(t) == SEARCH]
    if not complete:
        return None
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(complete, key=lambda t: (sign * t.values[0], t.number))


# ----------------------------------------------------------------------------------------------
# One trial


class Objective:
    """The objective Optuna calls: turns a trial into a ``TrialRequest`` and its outcome into values."""

    def __init__(self, runner: TrialRunner):
        self.runner, self.spec = runner, runner.spec

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample (or, for an enqueued trial, read back) every parameter of the space."""
        values = {}
        for key, param in self.spec.space.items():
            if param.type == "categorical":
                values[key] = trial.suggest_categorical(key, list(param.choices))
            elif param.type == "int":
                values[key] = trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1),
                                                log=param.log)
            else:
                values[key] = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
        return values

    def request(self, trial: optuna.Trial) -> TrialRequest:
        """Return what the trial trains; confirmation runs carry their variant and seed as user attrs."""
        phase = trial.user_attrs.get("phase", SEARCH)
        if phase == CONFIRM:
            variant, seed = trial.user_attrs["variant"], trial.user_attrs["seed"]
            overrides = dict(trial.user_attrs.get("overrides", {}))
            if variant == BEST:
                overrides.update(self.suggest(trial))
        else:
            variant, seed, overrides = SEARCH, self.spec.sampler_seed, self.suggest(trial)
        for key, value in (("phase", phase), ("variant", variant), ("seed", seed)):
            trial.set_user_attr(key, value)
        # RetryHeartbeatStaleTrialCallback stores the number of the trial it retries as "failed_trial".
        retry_of = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        return TrialRequest(trial.number, phase, variant, seed, overrides, retry_of)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        request = self.request(trial)
        prune = request.phase == SEARCH and self.spec.pruner != "none"

        def prune_check(epoch: int, value: float) -> str | None:
            trial.report(value, step=epoch)
            if trial.should_prune():
                return f"pruned by the median rule at epoch {epoch}: {self.spec.objectives[0]}={value:.4g}"
            return None

        outcome = self.runner.run(
            request,
            on_run_id=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
            on_failure=lambda reason: trial.set_user_attr("failure_reason", reason[:2000]),
            prune_check=prune_check if prune else None,
        )
        if outcome.stop_reason:
            raise optuna.TrialPruned(outcome.stop_reason)
        return outcome.values[0] if len(outcome.values) == 1 else outcome.values


# ----------------------------------------------------------------------------------------------
# The two phases


class Runner:
    """Runs the search phase, then the confirmation phase, of one study in this process."""

    def __init__(self, study: optuna.Study, objective: Objective, storage: str, progress: bool):
        self.study, self.objective, self.storage, self.progress = study, objective, storage, progress
        self.spec, self.budget = objective.spec, objective.runner.budget
        self.bar: Any = None
        self.closed_runs: set[str] = set()  # MLflow runs of failed trials already checked

    def run(self, n_trials: int, timeout: float) -> None:
        """Run search trials until ``n_trials`` have finished (or ``timeout`` s), then the confirmation."""
        from tqdm.auto import tqdm

        if self.spec.sampler == "grid":
            n_trials = min(n_trials, self.spec.grid_size())
        finished, _ = search_counts(self.study)
        total = max(n_trials, finished) + len(self.spec.confirm_variants) * self.budget.seeds
        done = finished + sum(1 for t in self.study.get_trials(deepcopy=False)
                              if _phase(t) == CONFIRM and t.state in (*DONE_STATES, TrialState.FAIL))
        with tqdm(total=total, initial=min(done, total), unit="trial", desc=self.spec.name,
                  disable=not self.progress) as self.bar:
            self._search(n_trials, timeout)
            self._confirm()

    def _step(self) -> None:
        """Run one trial: a queued one (a retry or a confirmation run) first, else a new sample."""
        self.study.optimize(self.objective, n_trials=1, catch=(TrialFailed,), callbacks=[self._finished])

    def _prepare(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
            requeue_interrupted(self.study)
        self._close_orphaned_runs()

    def _close_orphaned_runs(self) -> None:
        """Mark KILLED the MLflow runs that a dead worker left RUNNING.

        A failed trial's run is still RUNNING when its worker was killed (SIGKILL, power loss),
        because nothing ended it. NOTE: the killed invocation's parent run is not closed here and
        stays RUNNING. A retry that resumes it reopens it, so only runs of no RUNNING trial
        are closed.
        """
        trials = self.study.get_trials(deepcopy=False)
        busy = {t.user_attrs.get("mlflow_run_id") for t in trials if t.state == TrialState.RUNNING}
        uri = self.objective.runner.tracking_uri
        for trial in trials:
            run_id = trial.user_attrs.get("mlflow_run_id")
            if trial.state != TrialState.FAIL or not run_id or run_id in busy or run_id in self.closed_runs:
                continue
            self.closed_runs.add(run_id)
            if tracking.read_run(run_id, uri)["status"] == "RUNNING":
                log.info("trial %d: its worker stopped without ending MLflow run %s; marked KILLED", trial.number,
                         run_id)
                tracking.set_run_tags(run_id, {"trial_state": "FAIL", "failure_reason":
                                               "the worker stopped without a heartbeat; retried when the study resumes"},
                                      uri)
                tracking.end_run(run_id, tracking.KILLED, uri)

    def _search(self, n_trials: int, timeout: float) -> None:
        started = time.monotonic()
        while True:
            self._prepare()
            finished, pending = search_counts(self.study)
            waiting = any(_phase(t) == SEARCH for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if finished + pending >= n_trials and not waiting:
                break
            if timeout and time.monotonic() - started >= timeout:
                log.info("%s: search stopped after the %.0f s timeout with %d of %d trials finished",
                         self.spec.name, timeout, finished, n_trials)
                break
            self._step()
        if pending := search_counts(self.study)[1]:
            log.warning("%s: %d search trials are still running in other workers (or died and await a retry); "
                        "the confirmation starts without them", self.spec.name, pending)

    def _confirm(self) -> None:
        with once(self.study, open_storage(self.storage), f"confirm-{self.budget.name}") as owner:
            if owner:
                self._enqueue_confirmation()
        self._enqueue_confirmation()  # fills in what an interrupted earlier enqueueing left out
        while True:
            self._prepare()
            waiting = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
            if not waiting:
                break
            self._step()

    def _enqueue_confirmation(self) -> None:
        existing = {(t.user_attrs.get("variant"), t.user_attrs.get("seed"))
                    for t in self.study.get_trials(deepcopy=False) if _phase(t) == CONFIRM}
        seeds = range(self.spec.confirm_seed_start, self.spec.confirm_seed_start + self.budget.seeds)
        for variant in self.spec.confirm_variants:
            missing = [seed for seed in seeds if (variant, seed) not in existing]
            fixed = self._variant(variant) if missing else None
            if fixed is None:
                continue
            params, overrides = fixed
            for seed in missing:
                self.study.enqueue_trial(params, user_attrs={"phase": CONFIRM, "variant": variant, "seed": seed,
                                                             "overrides": overrides})

    def _variant(self, variant: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Return (Optuna params, config overrides) of a confirmation variant; None to skip it."""
        if variant == BEST:
            number = self.study.user_attrs.get("best_trial")
            best = self.study.get_trials(deepcopy=False)[number] if number is not None else best_search_trial(self.study)
            if best is None:
                log.warning("%s: no search trial completed, so the variant 'best' is not confirmed", self.spec.name)
                return None
            if number is None:
                self.study.set_user_attr("best_trial", best.number)
                log.info("%s: best search trial is %d (%s)", self.spec.name, best.number, _format_params(best.params))
            return dict(best.params), {}
        baseline = self.spec.baselines[variant]
        overrides = dict(baseline.overrides)
        if baseline.best_of:
            overrides = {**self._best_of(baseline.best_of, variant), **overrides}
        return {}, overrides

    def _best_of(self, other: str, variant: str) -> dict[str, Any]:
        try:
            study = optuna.load_study(study_name=other, storage=self.study._storage)
        except KeyError:
            log.warning("%s: baseline %s takes the best parameters of study %r, which is not in %s; it runs with "
                        "its own overrides only", self.spec.name, variant, other, self.storage)
            return {}
        number = study.user_attrs.get("best_trial")
        best = study.get_trials(deepcopy=False)[number] if number is not None else best_search_trial(study)
        if best is None:
            log.warning("%s: study %r has no complete search trial; baseline %s runs with its own overrides only",
                        self.spec.name, other, variant)
            return {}
        log.info("%s: baseline %s uses trial %d of %s: %s", self.spec.name, variant, best.number, other,
                 _format_params(best.params))
        return dict(best.params)

    def _finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Log one line per finished trial: its values and the best search value so far."""
        self.bar.update(1)
        attrs = trial.user_attrs
        variant = "" if _phase(trial) == SEARCH else f" {attrs.get('variant')}"
        what = f"trial {trial.number} ({_phase(trial)}{variant}, seed {attrs.get('seed')})"
        if trial.state == TrialState.COMPLETE:
            values = ", ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.objectives, trial.values))
            best = best_search_trial(study)
            best_text = f"best {best.values[0]:.4g} (trial {best.number})" if best else "no search trial complete yet"
            log.info("%s %s in %.0f s; %s", what, values, _seconds(trial), best_text)
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            epoch = max(trial.intermediate_values)
            log.info("%s PRUNED after %.0f s at epoch %d: %s=%.4g", what, _seconds(trial), epoch,
                     self.spec.objectives[0], trial.intermediate_values[epoch])
        else:
            reason = attrs.get("failure_reason", "")
            log.info("%s %s after %.0f s%s", what, trial.state.name, _seconds(trial), f": {reason}" if reason else "")


def route_optuna_logging() -> None:
    """Send Optuna's log records through the ``logging`` root handlers, warnings and errors only.

    The study logs its own line per finished trial, so Optuna's INFO line would repeat it.
    """
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return 0.0


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "no parameters"


def run_study(spec: StudySpec, budget_name: str, storage: str = DEFAULT_STORAGE, tracking_uri: str | None = None,
              device: str | None = None, n_trials: int | None = None, timeout: float | None = None,
              progress: bool = True) -> str:
    """Run (or resume) one study for one data source: search, then confirmation.

    Args:
        spec: the study, restricted to one data source (``StudySpec.for_source``).
        budget_name: smoke, quick or full.
        storage: Optuna storage URL (``journal:PATH`` for a journal file).
        tracking_uri: MLflow tracking URI; None uses MLflow's default.
        device: ``train.device`` for every trial; None keeps the config's (auto).
        n_trials: search trials to finish, overriding the budget's.
        timeout: seconds after which no new search trial starts, overriding the budget's.
        progress: show the study's and the trainer's progress bars.

    Returns:
        The id of the MLflow parent run of this invocation.

    Raises:
        StudyError: a stored study of other settings, a missing budget.
        KeyboardInterrupt: the parent run is marked KILLED; rerunning resumes the study.
    """
    budget = spec.budget(budget_name)
    study = open_study(spec, budget_name, storage)
    warn_concurrent_sqlite(study, storage)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    claims = ",".join(spec.claim_ids)
    parent = tracking.Run.start(spec.name, f"{spec.name}-{budget_name}-{stamp}", None, {
        "study": spec.name, "kind": "study", "budget": budget_name, "description": spec.description,
        "claims": claims, "data_source": spec.data_sources[0]}, tracking_uri)
    study.set_user_attr("parent_run_ids", [*study.user_attrs.get("parent_run_ids", []), parent.run_id])
    objective = Objective(TrialRunner(spec, budget, budget_name, parent.run_id, tracking_uri, device, progress))
    runner = Runner(study, objective, storage, progress)
    try:
        runner.run(budget.n_trials if n_trials is None else n_trials, budget.timeout if timeout is None else timeout)
    except KeyboardInterrupt:
        parent.end(tracking.KILLED)
        raise
    except BaseException:
        parent.end(tracking.FAILED)
        raise
    parent.end(tracking.FINISHED)
    return parent.run_id


# ----------------------------------------------------------------------------------------------
# What the report reads


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


if __name__ == "__main__":
    from suite.studycli import main

    raise SystemExit(main())

__all__ = ["DEFAULT_STORAGE", "StudyError", "StudySpec", "TrialFailed", "check_storage", "load_spec", "open_study",
           "open_storage", "warn_concurrent_sqlite",
           "route_optuna_logging", "run_study",
           "param_importances", "pareto_front", "trials_frame"]
