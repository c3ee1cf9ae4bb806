"""The two phases of a study, search and confirmation, run in this process.

Every trial calls ``suite.train.train`` here, as a nested MLflow run under one parent run per
invocation of the study command.
"""

from __future__ import annotations

import datetime
import logging
import time
import warnings
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from suite import tracking
from suite.study import storage as storage_module
from suite.study.storage import (CONFIRM, DONE_STATES, MAX_RETRIES, _phase, once, open_storage, open_study,
                                 warn_concurrent_sqlite)
from suite.studyfile import BEST, SEARCH, StudySpec
from suite.studyspec import DEFAULT_STORAGE
from suite.studytrial import TrialFailed, TrialRequest, TrialRunner

log = logging.getLogger(__name__)

WAIT_POLL_S = 2.0  # how often a worker that waits for other workers' search trials looks again
SOURCE_TRIAL = "source_trial"  # user attribute of a "best" confirmation trial: the search trial it confirms


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
        trial.set_user_attr("parent_run_id", self.runner.parent_run_id)
        if phase == CONFIRM:
            variant, seed = trial.user_attrs["variant"], trial.user_attrs["seed"]
            overrides = dict(trial.user_attrs.get("overrides", {}))
            if variant == BEST:
                source, best = trial.user_attrs.get(SOURCE_TRIAL), trial.study.user_attrs.get("best_trial")
                if source is not None and best is not None and source != best:
                    reason = f"superseded: search trial {best} is now the best, not trial {source}"
                    trial.set_user_attr("failure_reason", reason)
                    raise TrialFailed(reason)
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
        """Mark KILLED the MLflow runs, trial and parent, that a dead worker left RUNNING.

        When a worker is killed (SIGKILL, power loss), nothing ends its trial's run or the parent
        run of its study invocation. A retry that resumes the trial's run reopens it, so only
        runs of no RUNNING trial are closed.

        NOTE: a worker killed between two trials leaves no stale trial behind, so its parent run
        stays RUNNING.
        """
        trials = self.study.get_trials(deepcopy=False)
        busy = {t.user_attrs.get("mlflow_run_id") for t in trials if t.state == TrialState.RUNNING}
        own = self.objective.runner.parent_run_id
        for trial in trials:
            if trial.state != TrialState.FAIL:
                continue
            run_id, parent = trial.user_attrs.get("mlflow_run_id"), trial.user_attrs.get("parent_run_id")
            if run_id and run_id not in busy:
                self._close(run_id, f"trial {trial.number}: its worker stopped without ending MLflow run {run_id}",
                            {"trial_state": "FAIL", "failure_reason":
                             "the worker stopped without a heartbeat; retried when the study resumes"})
            if parent and parent != own and "failure_reason" not in trial.user_attrs:  # died, not failed
                self._close(parent, f"the study invocation of MLflow parent run {parent} stopped without ending it",
                            {"stopped": "the worker died (no heartbeat); found by a later invocation"})

    def _close(self, run_id: str, description: str, tags: dict[str, str]) -> None:
        """End ``run_id`` as KILLED with ``tags`` if it is still RUNNING; each run is read once."""
        if run_id in self.closed_runs:
            return
        self.closed_runs.add(run_id)
        uri = self.objective.runner.tracking_uri
        if tracking.read_run(run_id, uri)["status"] == "RUNNING":
            log.info("%s; marked KILLED", description)
            tracking.set_run_tags(run_id, tags, uri)
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
        self._await_running_search()

    def _await_running_search(self) -> None:
        """Wait for the search trials that other workers, or a worker that died, still hold.

        A live worker finishes its trial. A dead worker's trial turns stale after GRACE_PERIOD_S
        without a heartbeat and is retried here. The best configuration is thus chosen from the
        whole search. The journal storage has no heartbeat, so there the confirmation starts
        without the running trials.
        """
        announced = False
        while True:
            self._prepare()
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
            if any(_phase(t) == SEARCH and t.state == TrialState.WAITING for t in trials):
                self._step()  # a retry of a dead worker's trial
                continue
            running = [t.number for t in trials if _phase(t) == SEARCH and t.state == TrialState.RUNNING]
            if not running:
                return
            if self.storage.startswith("journal:"):
                log.warning("%s: search trials %s are still running in other workers; the journal storage has no "
                            "heartbeat, so the confirmation starts without them", self.spec.name, running)
                return
            if not announced:
                log.info("%s: waiting for search trials %s, held by other workers or by a worker that died; a dead "
                         "worker's trial is retried here after %d s without a heartbeat", self.spec.name, running,
                         storage_module.GRACE_PERIOD_S)
                announced = True
            time.sleep(WAIT_POLL_S)

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
        source = self._best_number() if BEST in self.spec.confirm_variants else None
        existing = {(t.user_attrs.get("variant"), t.user_attrs.get("seed"), t.user_attrs.get(SOURCE_TRIAL))
                    for t in self.study.get_trials(deepcopy=False) if _phase(t) == CONFIRM}
        seeds = range(self.spec.confirm_seed_start, self.spec.confirm_seed_start + self.budget.seeds)
        for variant in self.spec.confirm_variants:
            number = source if variant == BEST else None
            missing = [seed for seed in seeds if (variant, seed, number) not in existing]
            fixed = self._variant(variant) if missing else None
            if fixed is None:
                continue
            params, overrides = fixed
            for seed in missing:
                attrs = {"phase": CONFIRM, "variant": variant, "seed": seed, "overrides": overrides}
                if number is not None:
                    attrs[SOURCE_TRIAL] = number
                self.study.enqueue_trial(params, user_attrs=attrs)

    def _best_number(self) -> int | None:
        """Return the number of the search trial that "best" confirms, updating it when beaten.

        A search trial can finish after the confirmation was enqueued: a retry of a trial whose
        worker died, finished by another worker. When it beats the recorded best, it becomes the
        best, the earlier best's confirmation runs are tagged ``superseded`` (their waiting
        trials fail with that reason when they start) and the new best is confirmed.
        """
        best = best_search_trial(self.study)
        if best is None:
            return None
        recorded = self.study.user_attrs.get("best_trial")
        if recorded is None:
            log.info("%s: best search trial is %d (%s)", self.spec.name, best.number, _format_params(best.params))
        elif recorded != best.number:
            log.warning("%s: search trial %d (%s) finished after the confirmation started and beats trial %d; "
                        "its parameters are confirmed now and the runs confirming trial %d are marked superseded",
                        self.spec.name, best.number, _format_params(best.params), recorded, recorded)
            self._supersede(recorded, best.number)
        self.study.set_user_attr("best_trial", best.number)
        return best.number

    def _supersede(self, old: int, new: int) -> None:
        reason = f"superseded: search trial {new} is now the best, not trial {old}"
        for trial in self.study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            if _phase(trial) != CONFIRM or attrs.get("variant") != BEST or attrs.get(SOURCE_TRIAL, old) != old:
                continue
            if run_id := attrs.get("mlflow_run_id"):
                tracking.set_run_tags(run_id, {tracking.SUPERSEDED_TAG: reason}, self.objective.runner.tracking_uri)

    def _variant(self, variant: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Return (Optuna params, config overrides) of a confirmation variant; None to skip it."""
        if variant == BEST:
            number = self.study.user_attrs.get("best_trial")
            if number is None:
                log.warning("%s: no search trial completed, so the variant 'best' is not confirmed", self.spec.name)
                return None
            return dict(self.study.get_trials(deepcopy=False)[number].params), {}
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



__all__ = ["Objective", "Runner", "best_search_trial", "requeue_interrupted", "route_optuna_logging", "run_study",
           "search_counts"]
