"""Helpers that the benchmark scripts share: device setup, peak memory, FLOP counts, study budgets, JSON.

The scripts in this folder import it as a sibling module, because ``python benchmarks/NAME.py``
puts this folder on ``sys.path``. It is not part of the ``suite`` package, and no test imports it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from suite import config, data, loop, studyfile, train

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STUDY = "zpenalty"  # the study whose budgets the benchmarks follow
PACKAGES = ("torch", "torchvision", "torch-fidelity", "mlflow", "optuna", "pandas")
MIB = 1024 * 1024


def add_device_options(parser) -> None:
    """Add ``--device`` and ``--threads`` to an argparse parser."""
    parser.add_argument("--device", choices=config.DEVICES, default="auto",
                        help="device to measure on: auto (CUDA when present), cpu or cuda (default: auto)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of torch (torch.set_num_threads; default: torch's, one per core)")


def setup_device(name: str, threads: int | None) -> torch.device:
    """Set torch's CPU thread count and return the device ``name`` resolves to.

    Raises:
        suite.config.ConfigError: ``cuda`` without a CUDA device.
        ValueError: ``threads`` below 1.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"invalid value for --threads: {threads}; expected an integer >= 1")
        torch.set_num_threads(threads)
    return train.resolve_device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a clock read after it includes that work; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window; the CPU has no resettable peak, so this is a no-op there."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """Return the peak memory in MiB: CUDA's peak allocation since the last reset, else the process's peak RSS.

    On the CPU this is ``ru_maxrss`` (KiB on Linux), the highest resident set size of the whole
    process so far, not of the last measurement alone.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_kind(device: torch.device) -> str:
    """Return what ``peak_memory_mib`` measures on ``device``, for the output."""
    if device.type == "cuda":
        return "CUDA max_memory_allocated since a reset before each measurement"
    return "process peak RSS so far (ru_maxrss), not per measurement"


def step_flops(cfg: config.RunConfig, dataset: data.Dataset) -> int:
    """Return the FLOPs of one ``Trainer.step`` of ``cfg`` on one batch, counted by ``FlopCounterMode``.

    The step runs on the CPU on fresh networks without ``torch.compile``: the count depends on
    the operations and shapes alone, not on the device. ``FlopCounterMode`` counts matrix
    multiplications and convolutions, forward and backward; element-wise operations, losses and
    the Adam updates are not counted.
    """
    cpu_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cpu", compile=False))
    state = loop.Loop(cpu_cfg, dataset, torch.device("cpu"))
    x = next(state.batches(1))
    z = torch.randn(x.shape[0], cfg.model.nz)
    with FlopCounterMode(display=False) as counter:
        state.trainer.step(x, z)
    return int(counter.get_total_flops())


def study_budget_values(budget_name: str, overrides: dict[str, Any] | None = None,
                        study: str = STUDY) -> dict[str, Any]:
    """Return the dotted config values of a trial of ``study`` at ``budget_name``, read from its study file.

    The trial takes the study's base config, its first data source and the budget's overrides,
    as ``suite.studyspec.trial_values`` builds them; ``overrides`` come last.

    Raises:
        suite.studyspec.StudyError: the study file or the budget does not exist.
    """
    spec = studyfile.load_spec(study)
    budget = spec.budget(budget_name)
    return studyfile.trial_values(spec, budget, spec.data_sources[0], overrides or {}, spec.sampler_seed)


def cpu_model() -> str:
    """Return the CPU model from /proc/cpuinfo, else ``platform.processor()`` (may be empty)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def environment(device: torch.device) -> dict[str, Any]:
    """Return the machine, library versions, thread count, device and the current UTC time."""
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": gpu,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
        "versions": versions,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
