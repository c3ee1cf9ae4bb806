"""Checkpoints: tensors and plain values only, written atomically, loaded with ``weights_only=True``.

A training checkpoint contains the config (dotted keys), the epoch and step reached, the state of
every network and optimiser, every RNG state, the fixed noise, the MLflow run id and the
evaluation history. It is written to a temporary file in the same folder and renamed over the
old one, so a crash or a full disk while writing leaves the previous checkpoint intact.

The networks alone are also exported as safetensors (``export_weights``) for the MLflow run.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not a suite checkpoint."""


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``; clean up on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save(state: dict[str, Any], path: str | Path) -> None:
    """Write a training checkpoint atomically."""
    atomic_write(Path(path), lambda target: torch.save({"format": FORMAT_VERSION, **state}, target))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated, contains pickled objects other than
            tensors and plain values, or is not a suite checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} was rejected: it contains objects other than tensors and plain values, "
            f"which are never unpickled ({error}). Only checkpoints written by the suite can be resumed."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({error}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a suite checkpoint of format {FORMAT_VERSION}")
    return state


def export_weights(models: dict[str, torch.nn.Module], config: dict[str, Any], path: str | Path) -> None:
    """Write every network's parameters and buffers to one safetensors file.

    Keys are ``<network>.<parameter>`` (``G.net.0.weight``); the flat config goes into the
    file's metadata as JSON so that the weights can be rebuilt without the training checkpoint.
    """
    tensors = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in models.items()
        for key, value in module.state_dict().items()
    }
    metadata = {"config": json.dumps(config, sort_keys=True)}
    atomic_write(Path(path), lambda target: save_file(tensors, target, metadata=metadata))
