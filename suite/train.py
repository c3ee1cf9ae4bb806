"""One training run: the loop, the evaluation schedule, checkpoints, resume and the divergence guard.

``train(cfg)`` is what studies call; ``python -m suite.train --config FILE.toml --set key=value``
runs it from the command line. Metrics logged to MLflow (step is the global step for ``step/*``
and the epoch, counted from 1, for everything else):

- ``step/<term>``: loss terms every ``train.log_every`` steps (see ``suite.objectives``).
- ``<term>``: each loss term averaged over the epoch; ``d_acc_real``, ``d_acc_fake`` and, with
  ``ae_to_d``, ``d_acc_rec``: D's accuracy on the training batches before its update.
- ``code_norm_{mean,p10,p50,p90}`` of ||E(x)|| over the epoch, and the same divided by
  sqrt(nz) as ``code_norm_rel_*``.
- ``epoch_seconds`` and ``images_per_second`` per epoch, ``eval_seconds`` per evaluation (sample
  grids and metrics, without the upload of the images), ``train_seconds`` (training time without
  evaluation) at the end, and the evaluation metrics of ``suite.metrics``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import sys
import time

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from suite import checkpoint, config, data, imaging, tracking
from suite.loop import STOP, Diverged, Loop, run_epoch

log = logging.getLogger("suite.train")  # the same name when run as ``python -m suite.train``

CHECKPOINT_NAME = "checkpoint.pt"
STOPPED = "stopped"


class ResumeError(RuntimeError):
    """A resume that cannot continue: no checkpoint, or a checkpoint of a different config."""


@dataclass
class RunResult:
    """Outcome of a finished (or stopped) run, returned to the caller."""

    run_id: str
    status: str                       # "FINISHED" or "stopped" (an evaluation callback stopped it)
    epochs: int                       # epochs completed
    history: list[dict[str, float]]   # one dict per evaluation, with its "epoch"
    final: dict[str, float]           # the last evaluation's metrics
    out_dir: Path
    seconds: float
    stop_reason: str = ""
    tags: dict[str, str] = field(default_factory=dict)


EvaluationCallback = Callable[[int, dict[str, float]], str | None]


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``train.device`` (``auto`` picks CUDA when present)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise config.ConfigError("invalid value for train.device: 'cuda'; no CUDA device is available, use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def default_run_name(cfg: config.RunConfig) -> str:
    """Return ``<objective>-s<seed>-<hash of the config>``: the same config gives the same name."""
    digest = hashlib.sha256(json.dumps(config.flatten(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.method.objective}-s{cfg.train.seed}-{digest}"


def run_dir(cfg: config.RunConfig) -> Path:
    """Return the folder of this run's checkpoints: ``train.out_dir`` / run name."""
    return Path(cfg.train.out_dir) / (cfg.train.run_name or default_run_name(cfg))


def _sample_images(loop: Loop) -> dict[str, torch.Tensor]:
    """Return the fixed-noise sample grid and the held-out reconstruction grid (uint8 images)."""
    nets = loop.nets
    samples = nets.G(loop.fixed_z)
    if loop.points:
        centers = loop.dataset.centers
        return {"samples": imaging.scatter(samples.float().cpu(), loop.dataset.train[:2000], centers)}
    images = {"samples": imaging.grid(imaging.to_uint8(samples.float()).cpu())}
    if nets.E is not None and len(loop.dataset.holdout):
        real = loop.dataset.holdout[: max(1, loop.cfg.eval.grid_size // 2)].to(loop.device)
        rec = imaging.to_uint8(nets.G(nets.encode(imaging.to_float(real))).float())
        pairs = torch.stack([real, rec], dim=1).flatten(0, 1)  # real, reconstruction, real, ...
        images["reconstructions"] = imaging.grid(pairs.cpu(), nrow=2 * math.ceil(math.sqrt(len(real) / 2)))
    return images


def evaluate(loop: Loop, run: tracking.Run, evaluator: Any, final: bool) -> dict[str, float]:
    """Evaluate at the current epoch: sample grids, the metrics hook, logging to MLflow."""
    started = time.perf_counter()
    loop.nets.train(False)
    metrics: dict[str, float] = {}
    with torch.no_grad():
        images = _sample_images(loop)
    if evaluator is not None:
        result = evaluator.evaluate(loop.nets, loop.epoch, final)
        metrics.update(result.metrics)
        images.update(result.images)
        if result.tags:
            run.set_tags(result.tags)
    loop.nets.train(True)
    # Logged apart from ``metrics``, so the history, the pruning callback and the report see no new key.
    run.log_metrics({**metrics, "eval_seconds": time.perf_counter() - started}, step=loop.epoch)
    for name, image in images.items():
        run.log_image(image, f"{name}/epoch_{loop.epoch:04d}.png")
    loop.history.append({"epoch": loop.epoch, **metrics})
    return metrics


def _open_run(cfg, dataset, device, resume_state, uri, parent_run_id, tags) -> tracking.Run:
    if resume_state is not None:
        return tracking.Run.reopen(resume_state["run_id"], uri)
    all_tags = {
        "variant": cfg.method.objective,
        "seed": cfg.train.seed,
        "objective": cfg.method.objective,
        "code_revision": tracking.code_revision(),
        "data_fingerprint": dataset.fingerprint,
        "data_source": cfg.data.source,
        "device": str(device),
        **(tags or {}),
    }
    name = cfg.train.run_name or default_run_name(cfg)
    return tracking.Run.start(cfg.train.experiment, name, config.flatten(cfg), all_tags, uri, parent_run_id)


def _load_resume_state(cfg: config.RunConfig, out_dir: Path, device: torch.device) -> dict[str, Any]:
    path = out_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise ResumeError(f"nothing to resume: no checkpoint at {path}; run without --resume to start"
                          + _nearest_checkpoint_text(cfg, out_dir))
    state = checkpoint.load(path, map_location=device)
    changes = config.diff(state["config"], config.flatten(cfg))
    if changes:
        raise ResumeError(f"resume rejected: the config differs from the checkpoint at {path}:\n  "
                          + "\n  ".join(changes) + "\nrun with the stored config, or use another train.out_dir")
    return state


def _nearest_checkpoint_text(cfg: config.RunConfig, out_dir: Path) -> str:
    """Describe the checkpoint of the same objective and seed whose config is closest to ``cfg``.

    A default run name hashes the whole config, so a changed value names another folder and
    ``--resume`` finds no checkpoint there. The closest stored run and its differences show the
    user which value changed.
    """
    if cfg.train.run_name:
        return ""
    current = config.flatten(cfg)
    found = []
    for path in sorted(out_dir.parent.glob(f"{cfg.method.objective}-s{cfg.train.seed}-*/{CHECKPOINT_NAME}")):
        try:
            stored = checkpoint.load(path)["config"]
        except (checkpoint.CheckpointError, KeyError, OSError):
            continue
        changes = config.diff(stored, current)
        found.append((len(changes), str(path), changes))
    if not found:
        return ""
    _, path, changes = min(found)
    return (f". The config differs from that of the closest stored run, {path}:\n  " + "\n  ".join(changes)
            + "\nset those values back to resume it, or run without --resume to start a new run")


def _make_evaluator(cfg, dataset, device):
    if not cfg.eval.enabled:
        return None
    from suite import metrics  # the evaluation package is optional for a bare training loop

    return metrics.Evaluator(cfg, dataset, device)


def train(
    cfg: config.RunConfig,
    *,
    resume: bool = False,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_evaluation: EvaluationCallback | None = None,
    on_start: Callable[[str], None] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train one run of ``cfg`` and track it in MLflow.

    Args:
        cfg: a validated run config.
        resume: continue from the checkpoint in ``run_dir(cfg)``; refused when its config differs.
        tracking_uri: MLflow tracking URI; None uses MLflow's default (``./mlflow.db``).
        parent_run_id: nest the run under this MLflow run (a study's parent run).
        tags: extra MLflow tags (study, trial, phase, ...).
        on_evaluation: called after each evaluation (and its checkpoint) with the epoch and the
            metrics. A returned string stops the run early with that reason (used for pruning).
        on_start: called with the MLflow run id as soon as the run exists, before any epoch.
        progress: show a progress bar.

    Returns:
        The run's id, status, evaluation history and final metrics.

    Raises:
        Diverged: a loss became non-finite; the MLflow run is marked FAILED.
        ResumeError: ``resume`` without a checkpoint, or with a different config.
    """
    out_dir = run_dir(cfg)
    for key in config.ignored_settings(cfg):
        log.warning("%s is set but objective %s ignores it", key, cfg.method.objective)
    device = resolve_device(cfg.train.device)
    if not resume and (out_dir / CHECKPOINT_NAME).exists():
        raise ResumeError(f"a checkpoint of this run already exists at {out_dir / CHECKPOINT_NAME}; pass --resume "
                          "to continue it, or set train.out_dir or train.run_name to start another run")
    state = _load_resume_state(cfg, out_dir, device) if resume else None
    dataset = data.load(cfg.data)
    evaluator = _make_evaluator(cfg, dataset, device)
    eval_tags = evaluator.prepare() if evaluator is not None else {}
    loop = Loop(cfg, dataset, device)
    if state is not None:
        loop.restore(state)
        log.info("resumed %s at epoch %d, step %d", out_dir, loop.epoch, loop.step)
    run = _open_run(cfg, dataset, device, state, tracking_uri, parent_run_id, tags)
    if on_start is not None:
        on_start(run.run_id)
    run.set_tags(eval_tags)
    try:
        return _run_epochs(loop, run, evaluator, out_dir, on_evaluation, progress)
    except Diverged as error:
        run.set_tags({"failure": "diverged", "failure_reason": str(error)})
        run.end(tracking.FAILED)
        raise
    except KeyboardInterrupt:
        run.set_tags({"failure": "interrupted"})
        run.end(tracking.KILLED)
        raise
    except Exception as error:
        run.set_tags({"failure": type(error).__name__, "failure_reason": str(error)[:4000]})
        run.end(tracking.FAILED)
        raise


def _is_eval_epoch(cfg: config.RunConfig, epoch: int) -> bool:
    every = cfg.train.eval_every
    return epoch == cfg.train.epochs or (every > 0 and epoch % every == 0)


def _run_epochs(loop, run, evaluator, out_dir, on_evaluation, progress) -> RunResult:
    cfg = loop.cfg
    total = cfg.train.epochs * loop.steps_per_epoch
    bar = tqdm(total=total, initial=loop.step, disable=not progress, unit="step", leave=False,
               desc=run_dir(cfg).name)
    metrics, reason = {}, None
    with bar:
        while loop.epoch < cfg.train.epochs and reason is None:
            summary = run_epoch(loop, run, bar)
            run.log_metrics(summary, step=loop.epoch)
            line = f"epoch {loop.epoch}/{cfg.train.epochs}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in summary.items() if k.startswith("loss") or k == "images_per_second")
            if _is_eval_epoch(cfg, loop.epoch):
                metrics = evaluate(loop, run, evaluator, final=loop.epoch == cfg.train.epochs)
                line += "".join(f", {k}={metrics[k]:.4g}" for k in sorted(metrics) if "/" not in k)[:400]
            log.info(line)

            # The checkpoint comes before the callback, so a stopped run can still be inspected.
            checkpoint.save(loop.state(run.run_id), out_dir / CHECKPOINT_NAME)
            if on_evaluation is not None and _is_eval_epoch(cfg, loop.epoch):
                reason = on_evaluation(loop.epoch, metrics)

    run.log_metrics({"train_seconds": loop.elapsed}, step=loop.epoch)
    _log_final_artifacts(loop, run, out_dir)
    status = STOPPED if reason else tracking.FINISHED
    if reason:
        run.set_tags({"stopped": reason})
    run.end(tracking.KILLED if reason else tracking.FINISHED)
    return RunResult(run.run_id, status, loop.epoch, loop.history, metrics, out_dir, loop.elapsed, reason or "")


def _log_final_artifacts(loop: Loop, run: tracking.Run, out_dir: Path) -> None:
    flat = config.flatten(loop.cfg)
    weights = out_dir / "model.safetensors"
    checkpoint.export_weights(loop.nets.modules(), flat, weights)
    run.log_file(weights, "checkpoint")
    run.log_dict(flat, "checkpoint/config.json")
    run.log_dict({"history": loop.history, "epochs": loop.epoch, "seconds": loop.elapsed}, "metrics.json")


def stop_on_sigterm() -> None:
    """Make SIGTERM and Ctrl-C stop a run at the next step: the run is marked KILLED, checkpoints stay.

    The first signal only sets ``suite.loop.STOP``, which the loop checks between steps, because an
    exception raised inside a database write (MLflow's or Optuna's SQLite) leaves that database
    locked for the rest of the process. A second signal interrupts at once. The last checkpoint
    is the one written after the last complete epoch, so ``--resume`` repeats the interrupted
    epoch exactly.
    """

    def request_stop(signum: int, frame: Any) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt(f"signal {signum} received twice")
        STOP.set()
        log.warning("signal %d received: stopping after the current training step (send it again to stop now)",
                    signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m suite.train``; returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m suite.train",
        description="Train one run (dcgan, aegan or vaegan) and track it in MLflow.",
        epilog="config keys (TOML sections, or --set with the dotted key or the bare name):\n\n"
        + config.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file with [data], [model], [method], ... tables")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, repeatable (for example --set z_penalty=0.1)")
    parser.add_argument("--resume", action="store_true", help="continue from this run's last checkpoint")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's, sqlite:///mlflow.db here)")
    parser.add_argument("--inception-weights", metavar="PATH", help="local inception-v3-compat weights file")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (hidden anyway when stderr is not a terminal)")
    args = parser.parse_args(argv)
    from suite.metrics.modes import SampleCountError

    stop_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    overrides = list(args.overrides)
    if args.inception_weights:
        overrides.append(f"eval.inception_weights={json.dumps(args.inception_weights)}")
    try:
        cfg = config.load(args.config, overrides)
        tracking.check_reachable(args.tracking_uri)
        progress = not args.no_progress and sys.stderr.isatty()
        result = train(cfg, resume=args.resume, tracking_uri=args.tracking_uri, progress=progress)
    except (config.ConfigError, SampleCountError) as error:
        log.error("%s", error)
        return 2
    except (ResumeError, checkpoint.CheckpointError, data.DataUnavailableError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    except KeyboardInterrupt:
        log.warning("interrupted; the last epoch's checkpoint is kept, continue with the same command and --resume")
        return 130
    epochs = f"{result.epochs} epoch" + ("" if result.epochs == 1 else "s")
    log.info("run %s %s after %s in %.0f s; see it with: mlflow ui%s", result.run_id, result.status, epochs,
             result.seconds, f" --backend-store-uri {args.tracking_uri}" if args.tracking_uri else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
