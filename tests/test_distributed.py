"""Several workers of one study: a PostgreSQL Optuna storage and an MLflow tracking server.

The servers are real (``tests/servers.py``) and bind to 127.0.0.1; the workers are separate
``python -m suite.study`` processes, as on several machines.
"""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import servers
from suite import study, studyfile, tracking

REPO = Path(__file__).resolve().parent.parent
GRID = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0]
WORKERS = 3


def _grid_study(folder: Path, name: str) -> None:
    text = (REPO / "studies" / "smoke.toml").read_text()
    for old, new in [
        ('sampler = "tpe"', 'sampler = "grid"'),
        ('pruner = "median"', 'pruner = "none"'),
        ('"method.z_penalty" = { type = "float", low = 1e-3, high = 1.0, log = true }',
         f'[grid]\n"method.z_penalty" = {GRID}'),
        ("[space]\n", ""),
        ("[claims]\nC1", "[confirm]\nvariants = []\n\n[claims]\n#C1"),
        ("n_trials = 2\nseeds = 1", f"n_trials = {len(GRID)}\nseeds = 1"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    (folder / "studies").mkdir()
    (folder / "studies" / f"{name}.toml").write_text(text)
    assert studyfile.load_spec(str(folder / "studies" / f"{name}.toml")).grid_size() == len(GRID)


@pytest.mark.slow
def test_workers_share_one_grid_study(tmp_path):
    name = "shared"
    _grid_study(tmp_path, name)
    cache = tmp_path / "cache"
    env = {**os.environ, "AEGAN_SUITE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    with servers.postgres() as urls, servers.mlflow_server(urls["mlflow"], tmp_path / "artifacts") as server:
        command = [sys.executable, "-m", "suite.study", name, "--budget", "smoke", "--storage", urls["optuna"],
                   "--tracking-uri", server, "--no-progress", "--no-report", "--threads", "1"]
        logs = [tmp_path / f"worker{i}.log" for i in range(WORKERS)]
        workers = []
        for path in logs:
            with open(path, "wb") as log_file:
                workers.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log_file,
                                                stderr=subprocess.STDOUT))
        codes = [worker.wait(timeout=600) for worker in workers]
        assert codes == [0] * WORKERS, "\n".join(path.read_text()[-2000:] for path in logs)

        frame = study.trials_frame(name, urls["optuna"])
        # Every grid point ran exactly once, none was lost or failed.
        assert list(frame["state"]) == ["COMPLETE"] * len(GRID), frame[["number", "state"]]
        assert sorted(frame["params_method.z_penalty"]) == GRID
        assert frame["mlflow_run_id"].is_unique
        # The trials were shared out: more than one worker ran some.
        parents = study._load(name, urls["optuna"]).user_attrs["parent_run_ids"]
        assert len(parents) == WORKERS
        ran = {tracking.read_run(run_id, server)["tags"]["mlflow.parentRunId"] for run_id in frame["mlflow_run_id"]}
        assert len(ran) >= 2
        for _, row in frame.iterrows():
            run = tracking.read_run(row["mlflow_run_id"], server)
            assert run["status"] == "FINISHED"
            assert run["tags"]["trial_number"] == str(row["number"])
            assert float(run["params"]["method.z_penalty"]) == row["params_method.z_penalty"]
            artifacts = tracking.list_artifacts(row["mlflow_run_id"], uri=server)
            assert "checkpoint/model.safetensors" in artifacts
            assert "samples/epoch_0001.png" in artifacts
        assert any((tmp_path / "artifacts").rglob("model.safetensors"))


def _sqlite_study(tmp_path: Path) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    shared = optuna.create_study(study_name="busy", storage=study.open_storage(url))
    trial = shared.ask()  # a trial of another worker: RUNNING, with a heartbeat
    shared._storage.record_heartbeat(trial._trial_id)
    return shared, url


def test_sqlite_with_live_worker_warns(tmp_path, caplog):
    shared, url = _sqlite_study(tmp_path)
    with caplog.at_level(logging.WARNING, logger="suite.study"):
        study.warn_concurrent_sqlite(shared, url)
    assert "trials [0] are running in another worker on the SQLite storage" in caplog.text
    assert "--storage postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE" in caplog.text


def test_sqlite_with_dead_worker_does_not_warn(tmp_path, caplog, monkeypatch):
    shared, url = _sqlite_study(tmp_path)
    monkeypatch.setattr(shared._storage._backend, "grace_period", 1)
    time.sleep(2.5)  # stale now: SQLite stores heartbeats to the second, so wait over 2 s
    with caplog.at_level(logging.WARNING, logger="suite.study"):
        study.warn_concurrent_sqlite(shared, url)
    assert "another worker" not in caplog.text
