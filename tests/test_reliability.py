"""The study command under crashes, signals and bad input, with real worker processes.

Each crash test starts ``python -m suite.study`` as a subprocess in a folder of its own (its own
SQLite Optuna storage and MLflow store), stops it in the middle of a trial, reruns the same
command and checks what the stores hold. The heartbeat is shortened through the environment so
that a killed worker's trial is found stale within seconds.
"""

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from servers import free_port
from suite import checkpoint, study, studycli, studyfile, tracking
from suite.report import document as report_document
from suite.report import runs as report_runs
from suite.report import study_info as report_info

REPO = Path(__file__).resolve().parent.parent
TWO_EPOCHS = [('seeds = 1\n', 'seeds = 1\n"train.epochs" = 2\n'),
              ("[claims]\nC1", "[confirm]\nvariants = []\n\n[claims]\n#C1")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One suite cache (the domain classifier) for every worker of this module."""
    return tmp_path_factory.mktemp("cache")


def _study_file(folder: Path, name: str, n_trials: int) -> None:
    text = (REPO / "studies" / "smoke.toml").read_text()
    for old, new in [*TWO_EPOCHS, ("n_trials = 2\nseeds = 1", f"n_trials = {n_trials}\nseeds = 1")]:
        assert old in text, old
        text = text.replace(old, new)
    (folder / "studies").mkdir(exist_ok=True)
    (folder / "studies" / f"{name}.toml").write_text(text)


def _stores(folder: Path) -> tuple[str, str]:
    return f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"


def _worker(folder: Path, cache: Path, name: str, log_name: str, grace: int = 2) -> subprocess.Popen:
    storage, uri = _stores(folder)
    env = {**os.environ, "AEGAN_SUITE_CACHE": str(cache), "AEGAN_SUITE_HEARTBEAT_S": "1",
           "AEGAN_SUITE_GRACE_PERIOD_S": str(grace), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "suite.study", name, "--budget", "smoke", "--storage", storage,
               "--tracking-uri", uri, "--no-progress", "--no-report", "--threads", "1"]
    with open(folder / log_name, "wb") as log_file:
        # SIGINT back to the default: a shell's background job may inherit it ignored.
        return subprocess.Popen(command, cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finish(process: subprocess.Popen, folder: Path, log_name: str, timeout: float = 300) -> tuple[int, str]:
    code = process.wait(timeout=timeout)
    return code, (folder / log_name).read_text()


def _wait_for_run(folder: Path, name: str, number: int, process: subprocess.Popen, timeout: float = 300) -> str:
    """Wait until trial ``number`` has an epoch checkpoint and a recorded MLflow run; return the run id."""
    storage, _ = _stores(folder)
    path = folder / "outputs" / "studies" / name / f"trial-{number}-search" / "checkpoint.pt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (folder / "first.log").read_text()[-3000:]
        if path.is_file():
            trials = study._load(name, storage).get_trials(deepcopy=False)
            if len(trials) > number and "mlflow_run_id" in trials[number].user_attrs:
                return trials[number].user_attrs["mlflow_run_id"]
        time.sleep(0.1)
    raise AssertionError(f"trial {number} wrote no checkpoint in {timeout} s")


@pytest.mark.slow
def test_killed_worker_trial_resumes(tmp_path, cache):
    """kill -9 in trial 1: trial 0 untouched, trial 1's run closed, then retried once from its checkpoint."""
    name = "crash"
    _study_file(tmp_path, name, n_trials=2)
    storage, uri = _stores(tmp_path)
    worker = _worker(tmp_path, cache, name, "first.log")
    dead_run = _wait_for_run(tmp_path, name, 1, worker)
    worker.kill()  # SIGKILL: no handler runs, the trial stays RUNNING and its run stays RUNNING
    worker.wait()
    before = study.trials_frame(name, storage)
    assert list(before["state"]) == ["COMPLETE", "RUNNING"]
    assert tracking.read_run(dead_run, uri)["status"] == "RUNNING"

    # Rerun at once with a 20 s grace period: the dead trial still looks alive, so the rerun waits
    # for it instead of confirming without it, and retries it once its heartbeat is 20 s old.
    code, output = _finish(_worker(tmp_path, cache, name, "second.log", grace=20), tmp_path, "second.log")
    assert code == 0, output[-3000:]
    assert "waiting for search trials [1]" in output
    assert f"MLflow run {dead_run}; marked KILLED" in output

    frame = study.trials_frame(name, storage)
    assert list(frame["state"]) == ["COMPLETE", "FAIL", "COMPLETE"]
    # Trial 0 is untouched: same run, same completion time, one MLflow run.
    assert frame.loc[0, "mlflow_run_id"] == before.loc[0, "mlflow_run_id"]
    assert frame.loc[0, "datetime_complete"] == before.loc[0, "datetime_complete"]
    assert len(tracking.find_runs(name, {"trial_number": 0}, uri)) == 1
    # Trial 2 is the one retry of trial 1; it continued the dead run from its epoch-1 checkpoint.
    assert frame.loc[2, "user_attrs_mlflow_run_id"] == dead_run
    assert frame.loc[2, "params_method.z_penalty"] == frame.loc[1, "params_method.z_penalty"]
    assert "trial 2 resumes trial 1 from" in output
    assert "(epoch 1)" in output
    resumed = tracking.read_run(dead_run, uri)
    assert resumed["status"] == "FINISHED"
    assert resumed["tags"]["trial_number"] == "2"
    assert resumed["tags"]["retry_of"] == "1"
    assert "failure_reason" not in resumed["tags"]  # the mark of the kill went with the retry
    # Epoch 2 may have been logged before the kill and again after the resume. The resume
    # repeats it bit for bit, so each step has one value.
    history = tracking.metric_history(dead_run, "loss_D_real", uri)
    assert {step: {value} for step, value in history} == {step: {v for s, v in history if s == step}
                                                          for step in (1, 2)}
    # Each configuration counts once: the failed trial has no value, the retry has one.
    assert frame["fid_domain"].notna().sum() == 2
    # In the report too: two search configurations, one run each, no run listed twice.
    loaded = report_runs.load(name, uri)
    configurations = report_runs.configurations(loaded.frame, "search")
    assert sorted(c.run_ids[0] for c in configurations) == sorted([frame.loc[0, "mlflow_run_id"], dead_run])
    assert [(c.seeds, c.duplicates) for c in configurations] == [(1, []), (1, [])]
    assert len(loaded.frame) == 2
    # The killed invocation's parent run is closed as KILLED by the next one, which finishes.
    first_parent, second_parent = study._load(name, storage).user_attrs["parent_run_ids"]
    assert tracking.read_run(first_parent, uri)["status"] == "KILLED"
    assert tracking.read_run(second_parent, uri)["status"] == "FINISHED"
    assert f"MLflow parent run {first_parent} stopped without ending it; marked KILLED" in output
    assert resumed["tags"][tracking.PARENT_TAG] == second_parent
    assert resumed["tags"]["resumed_from_parent"] == first_parent
    header = report_document.header(loaded, report_info.StudyInfo())
    assert f"`{dead_run}`: trial 2 continued trial 1 after its worker stopped" in "\n".join(header)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_resumes(tmp_path, cache, signum):
    name = "stopped"
    _study_file(tmp_path, name, n_trials=1)
    storage, uri = _stores(tmp_path)
    worker = _worker(tmp_path, cache, name, "first.log")
    run_id = _wait_for_run(tmp_path, name, 0, worker)
    worker.send_signal(signum)
    code, output = _finish(worker, tmp_path, "first.log", timeout=120)
    assert code == 130, output[-3000:]
    assert "rerun the same command to resume" in output
    frame = study.trials_frame(name, storage)
    assert list(frame["state"]) == ["FAIL"]
    run = tracking.read_run(run_id, uri)
    assert run["status"] == "KILLED"
    assert run["tags"]["trial_state"] == "FAIL"

    code, output = _finish(_worker(tmp_path, cache, name, "second.log"), tmp_path, "second.log")
    assert code == 0, output[-3000:]
    frame = study.trials_frame(name, storage)
    assert list(frame["state"]) == ["FAIL", "COMPLETE"]
    assert frame.loc[1, "user_attrs_mlflow_run_id"] == run_id
    assert tracking.read_run(run_id, uri)["status"] == "FINISHED"


# ----------------------------------------------------------------------------------------------
# Bad input: found before training, nothing stored is lost


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A working folder with the smoke study file and an Optuna storage holding one finished trial."""
    monkeypatch.chdir(tmp_path)
    _study_file(tmp_path, "kept", n_trials=1)
    storage, _ = _stores(tmp_path)
    kept = optuna.create_study(study_name="kept", storage=storage)
    kept.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.5))
    return tmp_path, storage


def _kept_intact(folder: Path, storage: str) -> None:
    trials = optuna.load_study(study_name="kept", storage=storage).get_trials()
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 1.5)]
    assert not (folder / "outputs").exists()


def test_unreachable_tracking_server_fails_fast(stored, caplog):
    folder, storage = stored

    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        assert studycli.main(["kept", "--budget", "smoke", "--storage", storage, "--tracking-uri", uri,
                              "--no-progress"]) == 1
    assert time.monotonic() - started < 30
    assert f"MLflow tracking store '{uri}' cannot be reached" in caplog.text
    assert "start the server or pass another --tracking-uri" in caplog.text
    _kept_intact(folder, storage)


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg2://postgres@127.0.0.1:{port}/x", "Connection refused"),
    ("postgresql+psycopg2://postgres@127.0.0.1:notaport/x", "ValueError"),
    ("nosuchdb://x", "NoSuchModuleError"),
])
def test_bad_storage_url_fails_fast(stored, caplog, url, shown):
    folder, storage = stored

    url = url.format(port=free_port())
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        assert studycli.main(["kept", "--budget", "smoke", "--storage", url, "--tracking-uri",
                              f"sqlite:///{folder / 'mlflow.db'}", "--no-progress"]) == 1
    assert time.monotonic() - started < 30
    assert f"Optuna storage {url!r} cannot be opened" in caplog.text
    assert shown in caplog.text
    assert "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE" in caplog.text
    _kept_intact(folder, storage)


def test_processes_opening_a_new_store_together(tmp_path):
    """Four processes create one new MLflow SQLite store at once; every one of them opens it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from suite import tracking; tracking.check_reachable({uri!r}); print('opened')"
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, outputs
    assert all(out.strip().endswith("opened") for out in outputs), outputs


@pytest.mark.parametrize("url, shown", [
    ("notaurl", "ArgumentError"),
    ("nosuchdb://x", "NoSuchModuleError"),
    ("journal:{missing}/study.log", "does not exist"),
])
def test_dry_run_checks_storage_url(url, shown, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    url = url.format(missing=tmp_path / "missing")
    with caplog.at_level(logging.ERROR):
        assert studycli.main(["smoke", "--dry-run", "--storage", url]) == 2
    assert f"Optuna storage {url!r} cannot be opened" in caplog.text
    assert shown in caplog.text
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"epoch": 1, "weights": torch.arange(4.0)}, path)
    real_save = torch.save

    def full_disk(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"\x80\x02partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as caught:
        checkpoint.save({"epoch": 2, "weights": torch.zeros(4)}, path)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(torch, "save", real_save)
    state = checkpoint.load(path)
    assert state["epoch"] == 1
    assert torch.equal(state["weights"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_study_names_cannot_leave_reports(name, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert studycli.main([name, "--budget", "smoke", "--no-progress"]) == 2
    assert "unknown study" in caplog.text or "study file" in caplog.text or "invalid study name" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("stem", ["..", ".hidden", "a b", "x;y"])
def test_unsafe_study_file_name_rejected(stem, tmp_path, caplog):
    path = tmp_path / f"{stem}.toml"
    path.write_text((REPO / "studies" / "smoke.toml").read_text())
    with pytest.raises(studyfile.StudyError, match=r"invalid study name .*rename the file"):
        studyfile.load_spec(str(path))


# ----------------------------------------------------------------------------------------------
# Non-finite values


def test_nan_metric_becomes_tag_not_number(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.Run.start("nan", "nan-run", None, {"kind": "trial"}, uri)
    run.log_metrics({"fid_domain": float("nan"), "recall_domain": 0.5}, step=1)
    run.log_metrics({"fid_domain": float("inf"), "recall_domain": 0.25}, step=2)
    run.end()
    stored = tracking.read_run(run.run_id, uri)
    assert "fid_domain" not in stored["metrics"]
    assert stored["metrics"]["recall_domain"] == 0.25
    assert stored["tags"]["nonfinite.fid_domain"] == "nan at step 1; not logged as a metric"
    assert tracking.metric_history(run.run_id, "fid_domain", uri) == []
