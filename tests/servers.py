"""Real servers for tests: a throwaway PostgreSQL cluster and an MLflow tracking server.

Both bind to 127.0.0.1 on a free port, live in a temporary folder and are stopped when the
context exits. PostgreSQL comes from Debian's packages (``.ci/run`` installs them); where it is
missing outside CI the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def require_postgres() -> tuple[str, str]:
    """Return the paths of initdb and pg_ctl, or skip (fail under CI) when PostgreSQL is missing."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    message = "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _as_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs it as the ``postgres`` user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres(databases: tuple[str, ...] = ("optuna", "mlflow")):
    """Start a PostgreSQL cluster on 127.0.0.1; yield ``{database: SQLAlchemy URL}``.

    The cluster lives in its own folder directly under the system temp folder, because the
    ``postgres`` user must be able to reach it and pytest's folders are private to root.
    """
    initdb, pg_ctl = require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="aegan-pg-"))
    data, sockets = folder / "pgdata", folder / "pgsocket"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chown(sockets, user.pw_uid, user.pw_gid)
    subprocess.run(_as_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    options = f"-h {LOOPBACK} -p {port} -k {sockets} -c fsync=off -c max_connections=100"
    subprocess.run(_as_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "pg.log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        psql = _postgres_bin("psql") or "psql"
        for name in databases:
            subprocess.run([psql, "-h", LOOPBACK, "-p", str(port), "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                           check=True, capture_output=True)
        yield {name: f"postgresql+psycopg2://postgres@{LOOPBACK}:{port}/{name}" for name in databases}
    finally:
        subprocess.run(_as_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, timeout: float = 120.0):
    """Start ``mlflow server`` on 127.0.0.1 with ``backend_uri``; yield its http URL."""
    port = free_port()
    log_path = artifacts.parent / "mlflow-server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port),
               "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts), "--workers", "1"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        process.wait(timeout=30)
