"""One trial of a study, without Optuna: its config, its resume point, the training run, its values.

``suite.study`` turns an Optuna trial into a ``TrialRequest``, passes callbacks for pruning and
for recording the MLflow run id and a failure reason, and turns the ``TrialOutcome`` back into
what Optuna expects.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import checkpoint, config, studyfile, tracking, train
from suite.studyspec import StudyError, StudySpec

log = logging.getLogger(__name__)

OUTPUT_ROOT = Path("outputs") / "studies"  # relative to the working folder

STOP_TAGS = ["failure_reason", "failure", "trial_state", "stopped"]  # set when a run stops early
PruneCheck = Callable[[int, float], str | None]  # (epoch, first objective's value) -> stop reason


class TrialFailed(RuntimeError):
    """An expected failure of one trial (divergence, a NaN or missing metric); the study goes on."""


@dataclass(frozen=True)
class TrialRequest:
    """One trial's work: a variant's overrides, a seed, and the trial it retries (if any)."""

    number: int
    phase: str  # search or confirm
    variant: str  # search, best or a baseline name
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    retry_of: int | None = None  # number of the trial whose worker died or was interrupted


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial: its MLflow run and its objective values, or why it was stopped early."""

    run_id: str
    values: list[float]  # one per objective; empty when stopped
    stop_reason: str = ""


class TrialRunner:
    """Trains the trials of one study invocation as nested runs under one MLflow parent run."""

    def __init__(self, spec: StudySpec, budget: studyfile.Budget, budget_name: str, parent_run_id: str,
                 tracking_uri: str | None, device: str | None, progress: bool):
        self.spec, self.budget, self.budget_name = spec, budget, budget_name
        self.parent_run_id, self.tracking_uri, self.device, self.progress = parent_run_id, tracking_uri, device, progress

    def run_config(self, number: int, variant: str, seed: int, overrides: dict[str, Any]) -> config.RunConfig:
        """Return the run config of trial ``number``; its checkpoints go to a folder of its own."""
        values = studyfile.trial_values(self.spec, self.budget, self.spec.data_sources[0], overrides, seed)
        values.update({"train.experiment": self.spec.name, "train.out_dir": str(OUTPUT_ROOT / self.spec.name),
                       "train.run_name": f"trial-{number}-{variant}"})
        if self.device:
            values["train.device"] = self.device
        return config.from_flat(values)

    def resume_point(self, request: TrialRequest) -> tuple[config.RunConfig, str | None]:
        """Return the config to train and, for a retry that can resume, the MLflow run it continues.

        A retry resumes in the original trial's folder when the checkpoint there was written by
        the same config. Otherwise it starts afresh in its own folder.
        """
        if request.retry_of is not None:
            cfg = self.run_config(request.retry_of, request.variant, request.seed, request.overrides)
            path = train.run_dir(cfg) / train.CHECKPOINT_NAME
            if path.is_file():
                state = checkpoint.load(path)
                changes = config.diff(state["config"], config.flatten(cfg))
                if not changes:
                    log.info("trial %d resumes trial %d from %s (epoch %d)", request.number, request.retry_of, path,
                             state["epoch"])
                    return cfg, state["run_id"]
                log.warning("trial %d retries trial %d, but that trial's checkpoint has another config (%s); "
                            "starting afresh", request.number, request.retry_of, "; ".join(changes))
        return self.run_config(request.number, request.variant, request.seed, request.overrides), None

    def tags(self, request: TrialRequest) -> dict[str, Any]:
        """Return the MLflow tags of the trial's run."""
        return {"study": self.spec.name, "kind": "trial", "phase": request.phase, "variant": request.variant,
                "seed": request.seed, "trial_number": request.number, "budget": self.budget_name}

    def run(self, request: TrialRequest, on_run_id: Callable[[str], None], on_failure: Callable[[str], None],
            prune_check: PruneCheck | None) -> TrialOutcome:
        """Train the trial and return its objective values.

        Args:
            request: the trial.
            on_run_id: called with the MLflow run id as soon as the run exists.
            on_failure: called with the reason of a failed trial before the exception propagates.
            prune_check: called after each evaluation but the last; a returned reason stops the run.

        Raises:
            TrialFailed: the run diverged, or an objective metric is missing or not finite.
            KeyboardInterrupt: the run is tagged as interrupted; it is retried when the study resumes.
        """
        cfg, resume_run = self.resume_point(request)
        tags = self.tags(request)
        known = {"run_id": resume_run}
        if resume_run is not None:
            on_run_id(resume_run)
            # The run continues in this invocation: it moves under this parent run, and the marks
            # of the stop (failure reason, trial state) go, so a finished retry reads as finished.
            old_parent = tracking.read_run(resume_run, self.tracking_uri)["tags"].get(tracking.PARENT_TAG, "")
            tracking.delete_run_tags(resume_run, STOP_TAGS, self.tracking_uri)
            tracking.set_run_tags(resume_run, {**tags, "retry_of": request.retry_of, "resumed_from_parent": old_parent,
                                               tracking.PARENT_TAG: self.parent_run_id}, self.tracking_uri)

        def run_id() -> str | None:
            if known["run_id"] is None:
                known["run_id"] = self._find_run_id(request.number)
                if known["run_id"] is not None:
                    on_run_id(known["run_id"])
            return known["run_id"]

        def started(new_run_id: str) -> None:
            # Stored before the first epoch, so that a trial whose worker dies can always be traced.
            known["run_id"] = new_run_id
            on_run_id(new_run_id)

        def on_evaluation(epoch: int, metrics: dict[str, float]) -> str | None:
            run_id()  # stored at the first evaluation, so that a trial whose worker dies can be traced
            value = metrics.get(self.spec.objectives[0])
            if prune_check is None or epoch >= cfg.train.epochs or value is None or not math.isfinite(value):
                return None
            return prune_check(epoch, float(value))

        def fail(reason: str) -> None:
            on_failure(reason)
            if run_id() is not None:
                tracking.set_run_tags(known["run_id"], {"trial_state": "FAIL", "failure_reason": reason[:4000]},
                                      self.tracking_uri)

        try:
            result = train.train(cfg, resume=resume_run is not None, tracking_uri=self.tracking_uri,
                                 parent_run_id=self.parent_run_id, tags=tags, progress=self.progress,
                                 on_evaluation=on_evaluation, on_start=started)
        except train.Diverged as error:
            fail(str(error))
            raise TrialFailed(str(error)) from error
        except train.ResumeError as error:
            # Only a fresh trial gets here: its folder contains a checkpoint that this study does not know.
            fail(f"ResumeError: {error}")
            raise StudyError(f"unexpected checkpoint in {train.run_dir(cfg)}: it was written by an earlier study of "
                             f"the same name whose Optuna storage is gone; delete {OUTPUT_ROOT / self.spec.name} or "
                             "run the study in another folder") from error
        except KeyboardInterrupt:
            if run_id() is not None:
                tracking.set_run_tags(known["run_id"], {"trial_state": "FAIL", "failure_reason":
                                                        "interrupted; retried when the study resumes"}, self.tracking_uri)
            raise
        except Exception as error:
            fail(f"{type(error).__name__}: {error}")
            raise
        known["run_id"] = result.run_id
        on_run_id(result.run_id)
        return self._outcome(result, fail)

    def _find_run_id(self, number: int) -> str | None:
        ids = tracking.find_runs(self.spec.name, {"study": self.spec.name, "trial_number": number,
                                                  tracking.PARENT_TAG: self.parent_run_id}, self.tracking_uri)
        return ids[0] if ids else None

    def _outcome(self, result: train.RunResult, fail: Callable[[str], None]) -> TrialOutcome:
        if result.status == train.STOPPED:
            tracking.set_run_tags(result.run_id, {"trial_state": "PRUNED"}, self.tracking_uri)
            return TrialOutcome(result.run_id, [], result.stop_reason)
        # A resumed run that had already trained every epoch evaluates nothing new: use its history.
        metrics = result.final or (result.history[-1] if result.history else {})
        values = []
        for metric in self.spec.objectives:
            value = metrics.get(metric)
            if value is None or not math.isfinite(value):
                found = ", ".join(sorted(k for k in metrics if "/" not in k and k != "epoch")) or "no metrics"
                reason = (f"metric {metric} is {value}" if value is not None
                          else f"metric {metric} is missing from the final evaluation, which has {found}")
                fail(reason)
                raise TrialFailed(reason)
            values.append(float(value))
        tracking.set_run_tags(result.run_id, {"trial_state": "COMPLETE"}, self.tracking_uri)
        return TrialOutcome(result.run_id, values)
