"""The state of one run between steps and one epoch of training.

``suite.train`` drives a ``Loop`` epoch by epoch. This module contains what happens inside an
epoch: batches in a resumable order, the step, statistics kept on the device and the
finiteness guard.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from suite import config, data, imaging, models, objectives, tracking

# Set by a SIGTERM or SIGINT handler (``suite.train.stop_on_sigterm``); checked between steps.
STOP = threading.Event()


class Diverged(RuntimeError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    def __init__(self, epoch: int, step: int, term: str, value: float):
        super().__init__(f"loss {term} became {value} at epoch {epoch}, step {step}; the run stopped "
                         "and its last good checkpoint was kept")
        self.epoch, self.step, self.term, self.value = epoch, step, term, value



class Loop:
    """The state of one run between steps; ``train`` drives it."""

    def __init__(self, cfg: config.RunConfig, dataset: data.Dataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.points = dataset.kind == "points"
        torch.manual_seed(cfg.train.seed)
        self.nets = models.build(cfg, dataset.channels, self.points)
        for module in self.nets.modules().values():
            module.to(device)
            if device.type == "cuda" and cfg.train.channels_last and not self.points:
                module.to(memory_format=torch.channels_last)
        o = cfg.optim
        self.optimizers = objectives.make_optimizers(self.nets, {"G": o.lr_G, "D": o.lr_D, "E": o.lr_E}, o.betas)
        use_amp = device.type == "cuda" and cfg.train.amp
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
        self.trainer = objectives.Trainer(self.nets, self.optimizers, cfg.method, cfg.model.pac, autocast)
        if cfg.train.compile and device.type == "cuda":
            for module in self.nets.modules().values():
                module.compile()  # in place, so state_dict keys stay unchanged
        self.train_data = dataset.train.to(device)
        self.fixed_z = torch.randn(cfg.eval.grid_size, cfg.model.nz, generator=torch.Generator().manual_seed(cfg.train.seed)).to(device)
        self.steps_per_epoch = len(self.train_data) // cfg.train.batch_size
        self.epoch, self.step, self.elapsed = 0, 0, 0.0
        self.history: list[dict[str, float]] = []

    # -- batches ------------------------------------------------------------------------------

    def batches(self, epoch: int):
        """Yield the epoch's batches in an order fixed by (seed, epoch), so resume repeats it."""
        order = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(
            self.cfg.train.seed * 1_000_003 + epoch)).to(self.device)
        size = self.cfg.train.batch_size
        for i in range(self.steps_per_epoch):
            batch = self.train_data[order[i * size : (i + 1) * size]]
            yield batch if self.points else imaging.to_float(batch)

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self, run_id: str) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": config.flatten(self.cfg),
            "epoch": self.epoch,
            "step": self.step,
            "elapsed": self.elapsed,
            "models": {k: v.state_dict() for k, v in self.nets.modules().items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "rng": rng,
            "fixed_z": self.fixed_z.cpu(),
            "run_id": run_id,
            "history": self.history,
            "data_fingerprint": self.dataset.fingerprint,
        }

    def restore(self, state: dict[str, Any]) -> None:
        for name, module in self.nets.modules().items():
            module.load_state_dict(state["models"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.fixed_z = state["fixed_z"].to(self.device)
        self.epoch, self.step, self.elapsed = state["epoch"], state["step"], state["elapsed"]
        self.history = list(state["history"])


def _epoch_summary(sums: dict[str, torch.Tensor], count: int, norms: list[torch.Tensor], nz: int) -> dict[str, float]:
    """Average the accumulated step statistics and add code-norm quantiles (one host sync)."""
    summary = {k: (v / count).item() for k, v in sums.items()}
    if norms:
        all_norms = torch.cat(norms).float()
        quantiles = torch.quantile(all_norms, torch.tensor([0.1, 0.5, 0.9], device=all_norms.device)).tolist()
        values = {"mean": all_norms.mean().item(), "p10": quantiles[0], "p50": quantiles[1], "p90": quantiles[2]}
        for name, value in values.items():
            summary[f"code_norm_{name}"] = value
            summary[f"code_norm_rel_{name}"] = value / math.sqrt(nz)
    return summary


def _check_finite(stats: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for term, value in stats.items():
        if term.startswith("loss") and not torch.isfinite(value).all():
            raise Diverged(epoch, step, term, float(value))


def run_epoch(loop: Loop, run: tracking.Run, bar: tqdm) -> dict[str, float]:
    """Train one epoch and return its summary statistics."""
    cfg, epoch = loop.cfg, loop.epoch + 1
    sums: dict[str, torch.Tensor] = {}
    norms: list[torch.Tensor] = []
    # A finiteness check syncs with the device, so on CUDA it runs only at logging points.
    check_every = 1 if loop.device.type == "cpu" else cfg.train.log_every
    started = time.perf_counter()
    for x in loop.batches(epoch):
        if STOP.is_set():
            raise KeyboardInterrupt("stop requested by a signal")
        z = torch.randn(x.shape[0], cfg.model.nz, device=loop.device)
        stats = loop.trainer.step(x, z)
        loop.step += 1

        # Statistics stay on the device until a logging point reads them.
        code_norm = stats.pop("code_norm", None)
        if code_norm is not None:
            norms.append(code_norm)
        for key, value in stats.items():
            sums[key] = sums[key] + value if key in sums else value.float().clone()
        if loop.step % check_every == 0:
            _check_finite(stats, epoch, loop.step)
        if loop.step % cfg.train.log_every == 0:
            values = {k: v.item() for k, v in stats.items()}
            run.log_metrics({f"step/{k}": v for k, v in values.items()}, step=loop.step)
            bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items() if k.startswith("loss")})
        bar.update(1)

    _check_finite({k: v / loop.steps_per_epoch for k, v in sums.items()}, epoch, loop.step)
    summary = _epoch_summary(sums, loop.steps_per_epoch, norms, cfg.model.nz)
    seconds = time.perf_counter() - started
    summary["epoch_seconds"] = seconds
    summary["images_per_second"] = loop.steps_per_epoch * cfg.train.batch_size / seconds
    loop.elapsed += seconds
    loop.epoch = epoch
    return summary
