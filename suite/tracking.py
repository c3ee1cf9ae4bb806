"""MLflow tracking: the only module of the suite that imports mlflow.

With no tracking URI given, MLflow's own default applies (``sqlite:///mlflow.db`` in the working
folder, artifacts under ``./mlruns``), so ``mlflow ui`` started in the same folder with no flags
shows every run. ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` selects another store or a server.

Metrics are sent through ``MlflowClient.log_batch``. A non-finite value is never sent as a number:
it becomes a tag ``nonfinite.<key>`` saying which value it was and at which step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per request
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nested runs
SUPERSEDED_TAG = "superseded"  # on runs confirming a "best" that a search trial finished later beat


def tracking_uri(uri: str | None = None) -> str:
    """Return the tracking URI in use: ``uri``, else MLFLOW_TRACKING_URI, else MLflow's default."""
    return uri or mlflow.get_tracking_uri()


def code_revision() -> str:
    """Return the git commit of the suite's source tree, with ``+dirty`` when it has edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if status else "")


class Run:
    """One MLflow run that a training run or a study writes to.

    Create it with ``Run.start`` (a new run) or ``Run.reopen`` (resume an existing one).
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._nonfinite_logged: set[str] = set()

    @classmethod
    def start(
        cls,
        experiment: str,
        run_name: str,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        uri: str | None = None,
        parent_run_id: str | None = None,
    ) -> "Run":
        """Create a run in ``experiment`` (created if missing), nested under ``parent_run_id``."""
        client = MlflowClient(tracking_uri(uri))
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else _create_experiment(client, experiment)
        all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        tracked = cls(client, run.info.run_id)
        if params:
            tracked.log_params(params)
        log.info("MLflow run %s (%s) in experiment %r at %s", run.info.run_id, run_name, experiment, client.tracking_uri)
        return tracked

    @classmethod
    def reopen(cls, run_id: str, uri: str | None = None) -> "Run":
        """Mark an existing run RUNNING again and return it (used on resume)."""
        client = MlflowClient(tracking_uri(uri))
        client.update_run(run_id, status="RUNNING")
        return cls(client, run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params as strings; lists are written as comma-separated values."""
        items = [Param(k, _param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags; values become strings."""
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log finite metrics at ``step``; a non-finite value becomes a ``nonfinite.<key>`` tag."""
        now = int(time.time() * 1000)
        finite, notes = [], {}
        for key, value in metrics.items():
            value = float(value)
            if math.isfinite(value):
                finite.append(Metric(key, value, now, step))
            elif key not in self._nonfinite_logged:
                self._nonfinite_logged.add(key)
                notes[f"nonfinite.{key}"] = f"{value} at step {step}; not logged as a metric"
        for start in range(0, len(finite), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=finite[start : start + MAX_BATCH])
        if notes:
            log.warning("run %s: non-finite metrics recorded as tags: %s", self.run_id, ", ".join(notes))
            self.set_tags(notes)

    def log_image(self, image: torch.Tensor, artifact_file: str) -> None:
        """Log a uint8 image (C, H, W) as a PNG artifact."""
        array = image.detach().cpu().permute(1, 2, 0).numpy()
        if array.shape[2] == 1:
            array = array[:, :, 0]
        self.client.log_image(self.run_id, np.ascontiguousarray(array), artifact_file=artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as an artifact."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a local file into the run's artifacts."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, values: dict[str, Any], artifact_file: str) -> None:
        """Log a dict as a JSON artifact."""
        self.client.log_dict(self.run_id, values, artifact_file)

    def end(self, status: str = FINISHED) -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)


def _create_experiment(client: MlflowClient, name: str) -> str:
    try:
        return client.create_experiment(name)
    except mlflow.exceptions.MlflowException:
        # Another worker created it between the lookup and the create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def read_run(run_id: str, uri: str | None = None) -> dict[str, Any]:
    """Return a run's status, params, tags and latest metrics as plain dicts."""
    run = MlflowClient(tracking_uri(uri)).get_run(run_id)
    return {
        "status": run.info.status,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
        "artifact_uri": run.info.artifact_uri,
    }


def metric_history(run_id: str, key: str, uri: str | None = None) -> list[tuple[int, float]]:
    """Return ``(step, value)`` pairs of one metric of a run, in step order."""
    history = MlflowClient(tracking_uri(uri)).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def list_artifacts(run_id: str, path: str | None = None, uri: str | None = None) -> list[str]:
    """Return the artifact paths of a run below ``path``, recursively."""
    client = MlflowClient(tracking_uri(uri))
    found, pending = [], [path]
    while pending:
        for item in client.list_artifacts(run_id, pending.pop()):
            (pending if item.is_dir else found).append(item.path)
    return sorted(found)


class ExperimentNotFound(LookupError):
    """No MLflow experiment of the requested name exists in the tracking store."""


def search_runs(
    experiment: str, filter_string: str = "", uri: str | None = None, page_size: int = 1000
) -> list[dict[str, Any]]:
    """Return every active run of ``experiment`` as plain dicts, reading all result pages.

    ``MlflowClient.search_runs`` returns at most ``max_results`` runs per call, so this follows
    its ``page_token`` until the store has no more pages. Runs come in start-time order, ties
    broken by run id.

    Args:
        experiment: the experiment name (a study's name).
        filter_string: an MLflow search filter, for example ``"tags.kind = 'trial'"``.
        uri: the tracking URI; None uses MLflow's default.
        page_size: runs per request (MLflow's default maximum is 1,000).

    Returns:
        One dict per run with ``run_id``, ``run_name``, ``status``, ``start_time`` and
        ``end_time`` (ms since the epoch; None while running), ``artifact_uri``, and the
        ``params``, ``tags`` and ``metrics`` (latest value of each key) dicts.

    Raises:
        ExperimentNotFound: the store has no experiment of that name.
    """
    client = MlflowClient(tracking_uri(uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ExperimentNotFound(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}; check the "
                                 "name, or pass the --tracking-uri that the study ran with")
    runs, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id], filter_string=filter_string, max_results=page_size,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"], page_token=token,
        )
        runs.extend(_run_dict(run) for run in page)
        token = page.token
        if not token:
            return runs


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "artifact_uri": run.info.artifact_uri,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
    }


def download_artifact(run_id: str, path: str, dst_dir: str | Path, uri: str | None = None) -> Path:
    """Download one artifact file of a run into ``dst_dir`` and return its local path."""
    Path(dst_dir).mkdir(parents=True, exist_ok=True)
    # MLflow draws a progress bar per file by default; a report downloads dozens of small images.
    quiet = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    if quiet:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        local = MlflowClient(tracking_uri(uri)).download_artifacts(run_id, path, str(dst_dir))
    finally:
        if quiet:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    return Path(local)


@contextlib.contextmanager
def _creation_lock(uri: str):
    """Hold an exclusive lock on ``<file>.lock`` next to an SQLite store while it is opened.

    MLflow creates and migrates a new store's tables on first open. Processes that do this at
    the same time (workers started together) fail with "table ... already exists" or
    "duplicate column name", and can leave the schema half-migrated for good; the lock makes
    them take turns. Other stores, and systems without ``fcntl``, are opened without it.
    """
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if path is None or fcntl is None or path in ("", ":memory:"):
        yield
        return
    lock = Path(path).expanduser().with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_reachable(uri: str | None = None) -> None:
    """Fail fast when the tracking store cannot be reached, before any training starts.

    MLflow's HTTP client retries for minutes by default, so the check allows one attempt with a
    10 s timeout (unless MLFLOW_HTTP_REQUEST_MAX_RETRIES or MLFLOW_HTTP_REQUEST_TIMEOUT are set).

    Raises:
        RuntimeError: the store did not respond; the message names the URI and how to fix it.
    """
    resolved = tracking_uri(uri)
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    unset = [key for key in quick if key not in os.environ]
    os.environ.update({key: quick[key] for key in unset})
    try:
        with _creation_lock(resolved):
            MlflowClient(resolved).search_experiments(max_results=1)
    except Exception as error:  # MLflow raises many types here (requests, sqlalchemy, its own)
        raise RuntimeError(
            f"MLflow tracking store {resolved!r} cannot be reached ({type(error).__name__}: {error}); "
            "start the server or pass another --tracking-uri (the default is sqlite:///mlflow.db "
            "in the working folder)"
        ) from error
    finally:
        for key in unset:
            os.environ.pop(key, None)


def set_run_tags(run_id: str, tags: dict[str, Any], uri: str | None = None) -> None:
    """Set tags on an existing run, whatever its status; values become strings."""
    Run(MlflowClient(tracking_uri(uri)), run_id).set_tags(tags)


def delete_run_tags(run_id: str, keys: list[str], uri: str | None = None) -> None:
    """Delete the tags in ``keys`` that the run has; the others are skipped."""
    client = MlflowClient(tracking_uri(uri))
    present = client.get_run(run_id).data.tags
    for key in keys:
        if key in present:
            client.delete_tag(run_id, key)


def end_run(run_id: str, status: str = FINISHED, uri: str | None = None) -> None:
    """Mark an existing run FINISHED, FAILED or KILLED."""
    Run(MlflowClient(tracking_uri(uri)), run_id).end(status)


def find_runs(experiment: str, tags: dict[str, Any], uri: str | None = None) -> list[str]:
    """Return the ids of the runs in ``experiment`` that carry every tag in ``tags``, newest first.

    An experiment that does not exist yet has no runs, so the result is an empty list.
    """
    client = MlflowClient(tracking_uri(uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    conditions = " and ".join(f"tags.`{key}` = '{_quoted(value)}'" for key, value in tags.items())
    runs = client.search_runs([found.experiment_id], filter_string=conditions, order_by=["attributes.start_time DESC"])
    return [run.info.run_id for run in runs]


def _quoted(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def ui_command(uri: str | None = None) -> str:
    """Return the ``mlflow ui`` command line that shows the store ``uri`` from the working folder.

    Plain ``mlflow ui`` serves MLflow's default store (``sqlite:///mlflow.db`` in the folder it
    starts in), so the flag is added only for another store.
    """
    resolved = tracking_uri(uri)
    default = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if resolved in ("sqlite:///mlflow.db", default):
        return "mlflow ui"
    return f"mlflow ui --backend-store-uri {resolved}"


__all__ = [
    "FAILED", "FINISHED", "KILLED", "ExperimentNotFound", "Run", "check_reachable", "code_revision",
    "download_artifact", "list_artifacts", "metric_history", "read_run", "search_runs", "tracking_uri",
]
