"""Sample grids and radius strips: the last-epoch image artifacts, copied next to the report."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from suite import tracking
from suite.metrics import keys
from suite.report.runs import Configuration

IMAGE_KINDS = (("samples", "sample grid"), (keys.RADIUS_STRIP, "radius strip"))


@dataclass
class Images:
    """The images of one configuration's representative run (its lowest seed)."""

    label: str
    run_id: str
    files: dict[str, str] = field(default_factory=dict)    # kind -> file name in the report folder
    epochs: dict[str, int] = field(default_factory=dict)   # kind -> epoch of the artifact


def slug(label: str) -> str:
    """Return ``label`` as a file-name part: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "configuration"


def last_epoch(run_id: str, kind: str, uri: str | None) -> tuple[str, int] | None:
    """Return the artifact path and epoch of the last ``<kind>/epoch_NNNN.png`` of a run."""
    pattern = re.compile(rf"{re.escape(kind)}/epoch_(\d+)\.png")
    found = [(int(m.group(1)), path) for path in tracking.list_artifacts(run_id, kind, uri)
             if (m := pattern.fullmatch(path))]
    if not found:
        return None
    epoch, path = max(found)
    return path, epoch


def fetch(configs: list[Configuration], folder: Path, uri: str | None) -> list[Images]:
    """Download the last sample grid and radius strip of each configuration into ``folder``."""
    found = []
    with tempfile.TemporaryDirectory() as scratch:
        for config in configs:
            run_id = config.run_ids[0]
            images = Images(config.label, run_id)
            for kind, _ in IMAGE_KINDS:
                artifact = last_epoch(run_id, kind, uri)
                if artifact is None:
                    continue
                path, epoch = artifact
                local = tracking.download_artifact(run_id, path, Path(scratch) / run_id / kind, uri)
                name = f"{slug(config.label)}_{kind}.png"
                shutil.copyfile(local, folder / name)
                images.files[kind], images.epochs[kind] = name, epoch
            found.append(images)
    return found
