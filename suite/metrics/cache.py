"""The suite's on-disk cache: its folder, and atomic writes into it.

Everything lives under ``$AEGAN_SUITE_CACHE`` (default ``~/.cache/aegan-suite``): trained domain
classifiers, torch-fidelity's cached real-image features and the suite's own real-data
statistics. Every file is written to a temporary file in its folder and renamed over the target,
so a reader never sees a partial file and concurrent writers leave one complete file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "AEGAN_SUITE_CACHE"


def cache_dir() -> Path:
    """Return the suite's cache folder: ``$AEGAN_SUITE_CACHE`` or ``~/.cache/aegan-suite``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "aegan-suite").expanduser()


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def read_json(path: Path) -> dict | None:
    """Return the JSON object stored at ``path``, or None when there is no such file."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_json(path: Path, value: dict) -> None:
    """Store ``value`` as JSON at ``path`` atomically."""
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(value, indent=1, sort_keys=True)))
