"""Training-step throughput of the suite against a bare reference loop, with peak memory and FLOPs per step.

Run by hand, never from the tests:

    python benchmarks/throughput.py                    # dcgan and aegan at 32 and 64 px, and the quick budget's nets
    python benchmarks/throughput.py --device cuda --threads 1 --json out.json

The suite side is ``suite.loop.run_epoch``: the real step, statistics kept on the device, a
finiteness check, sparse MLflow logging into a temporary SQLite store and a (hidden) progress
bar. The bare side is written here: the same networks, optimisers, autocast and loss terms in a
plain loop with no tracking, no statistics and no checks. Both see the same data, batch size and
number of steps. Their epochs alternate (bare first, then suite first, ...), so that a change in
the load of a shared CPU reaches both sides alike; the first epoch of each is a warm-up and is
not timed.

The ``quick`` cases use the networks and batch of the zpenalty study's quick budget (read from
``studies/zpenalty.toml``), so that ``benchmarks/evaluation.py`` can estimate a quick trial's
training time from their images per second. The FLOPs of one step of each case are counted by
``torch.utils.flop_counter.FlopCounterMode``. aegan adds an E forward and backward and a second G
forward and backward (on the reconstruction batch) to dcgan's work, so the aegan/dcgan FLOP ratio
is the time ratio of a step whose time follows its matrix work. Fixed costs per step (Python,
kernel launches, Adam updates) pull the measured ratio below it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import benchutil
from suite import config, data, loop, tracking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One measured setting; ``batch`` 0 takes ``--batch``."""

    group: str  # cases of one group differ only in the objective; their ratios are reported together
    objective: str
    size: int
    channels: int
    width: int  # ngf = ndf = nef
    nz: int = 100
    batch: int = 0


def cases() -> list[Case]:
    """Return every case: dcgan and aegan at 32 px (gray, width 32) and 64 px (RGB, width 64), and ``quick``."""
    quick = benchutil.study_budget_values("quick")
    widths = {quick[f"model.{key}"] for key in ("ngf", "ndf", "nef")}
    if len(widths) != 1:
        raise ValueError(f"the quick budget's nets differ in width ({sorted(widths)}); this benchmark gives all "
                         "three nets one width")
    quick_cfg = config.from_flat(quick)
    found = []
    for group, size, channels, width in (("32", 32, 1, 32), ("64", 64, 3, 64)):
        found += [Case(group, objective, size, channels, width) for objective in ("dcgan", "aegan")]
    # mnist5k is gray: channels 0 in the budget keeps the source's single channel.
    found += [Case("quick", objective, quick_cfg.data.image_size, quick_cfg.data.channels or 1, quick_cfg.model.ngf,
                   quick_cfg.model.nz, quick_cfg.train.batch_size) for objective in ("dcgan", "aegan")]
    return found


def make_config(case: Case, batch: int, limit: int, device: torch.device) -> config.RunConfig:
    """Return the run config of ``case``: no evaluation, no held-out split, the first ``limit`` images."""
    return config.from_flat({
        "method.objective": case.objective, "data.image_size": case.size, "data.channels": case.channels,
        "model.ngf": case.width, "model.ndf": case.width, "model.nef": case.width, "model.nz": case.nz,
        "train.batch_size": case.batch or batch, "data.limit": limit, "data.holdout": 0, "eval.enabled": False,
        "method.z_penalty": 0.01, "train.device": device.type,
    })


def bare_epoch(state: loop.Loop, epoch: int) -> None:
    """Run one epoch of the same update written plainly, without statistics, checks or logging."""
    nets, opt, method = state.nets, state.optimizers, state.cfg.method
    autocast = state.trainer.autocast  # bf16 on CUDA when train.amp is on, as on the suite side
    bce = F.binary_cross_entropy_with_logits
    for x in state.batches(epoch):
        z = torch.randn(x.shape[0], state.cfg.model.nz, device=state.device)
        with autocast:
            x_fake = nets.G(z)
            if nets.E is not None:
                z_enc = nets.E(x)
                x_rec = nets.G(z_enc)
            real, fake = nets.D(x).float(), nets.D(x_fake.detach()).float()
            loss_D = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
        opt["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opt["D"].step()

        with autocast:
            fake = nets.D(x_fake).float()
            loss = bce(fake, torch.ones_like(fake))
            if nets.E is not None:
                loss = loss + method.recon_weight * F.mse_loss(x_rec, x)
                loss = loss + method.z_penalty * F.relu(z_enc.pow(2).sum(1) - method.z_floor**2).mean()
        for name in ("G", "E"):
            if name in opt:
                opt[name].zero_grad(set_to_none=True)
        loss.backward(inputs=state.trainer.ge_params)
        for name in ("G", "E"):
            if name in opt:
                opt[name].step()


def time_sides(sides: dict[str, Callable[[int], None]], epochs: int, images: int, device: torch.device) -> dict:
    """Run ``epochs`` + 1 epochs of each side, alternating their order; return median rates and peak memory."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    peaks = {name: 0.0 for name in sides}
    above_start = {name: 0.0 for name in sides}
    for epoch in range(epochs + 1):
        order = list(sides) if epoch % 2 == 0 else list(reversed(sides))
        for name in order:
            benchutil.reset_peak_memory(device)
            start_mib = torch.cuda.memory_allocated(device) / benchutil.MIB if device.type == "cuda" else 0.0
            benchutil.synchronize(device)
            started = time.perf_counter()
            sides[name](epoch)
            benchutil.synchronize(device)
            seconds = time.perf_counter() - started
            if epoch > 0:  # the first epoch warms up allocators and kernels
                rates[name].append(images / seconds)
            peaks[name] = max(peaks[name], benchutil.peak_memory_mib(device))
            above_start[name] = max(above_start[name], peaks[name] - start_mib)
    result = {f"{name}_images_per_second": statistics.median(rates[name]) for name in sides}
    result.update({f"{name}_epoch_rates": rates[name] for name in sides})
    if device.type == "cuda":
        # Both loops stay allocated, so the peak includes the other side's weights and data. The
        # growth over the epoch's start is this side's activations, gradients and temporaries.
        result.update({f"{name}_peak_mib": peaks[name] for name in sides})
        result.update({f"{name}_peak_above_start_mib": above_start[name] for name in sides})
    return result


def measure(case: Case, epochs: int, batch: int, limit: int, store: str, device: torch.device) -> dict:
    """Measure one case: both sides' images per second, peak memory and the FLOPs of one step."""
    cfg = make_config(case, batch, limit, device)
    dataset = data.load(cfg.data)
    batch = cfg.train.batch_size
    images_per_epoch = (len(dataset.train) // batch) * batch
    if images_per_epoch == 0:
        raise ValueError(f"--limit {limit} gives fewer training images than one batch of {batch}")
    result = {"group": case.group, "objective": case.objective, "image_size": case.size, "channels": case.channels,
              "width": case.width, "nz": case.nz, "batch": batch, "images_per_epoch": images_per_epoch,
              "device": str(device), "amp": cfg.train.amp and device.type == "cuda",
              "compile": cfg.train.compile and device.type == "cuda"}
    result["flops_per_step"] = benchutil.step_flops(cfg, dataset)
    result["flops_per_image"] = result["flops_per_step"] / batch

    bare = loop.Loop(cfg, dataset, device)
    suite_loop = loop.Loop(cfg, dataset, device)
    run = tracking.Run.start("benchmark", f"{case.objective}-{case.group}", config.flatten(cfg), uri=store)
    with tqdm(disable=True) as bar:
        sides = {"bare": lambda epoch: bare_epoch(bare, epoch + 1),
                 "suite": lambda epoch: loop.run_epoch(suite_loop, run, bar)}
        result.update(time_sides(sides, epochs, images_per_epoch, device))
    run.end()
    result["ratio"] = result["suite_images_per_second"] / result["bare_images_per_second"]
    if device.type == "cpu":
        result["process_peak_rss_mib"] = benchutil.peak_memory_mib(device)
    return result


def ratios(results: list[dict]) -> list[dict]:
    """Return, per group, aegan's time per step over dcgan's (both sides) and its FLOPs per step over dcgan's."""
    by_key = {(r["group"], r["objective"]): r for r in results}
    rows = []
    for group in dict.fromkeys(r["group"] for r in results):
        dcgan, aegan = by_key.get((group, "dcgan")), by_key.get((group, "aegan"))
        if dcgan is None or aegan is None:
            continue
        rows.append({
            "group": group,
            "suite_time_ratio": dcgan["suite_images_per_second"] / aegan["suite_images_per_second"],
            "bare_time_ratio": dcgan["bare_images_per_second"] / aegan["bare_images_per_second"],
            "flop_ratio": aegan["flops_per_step"] / dcgan["flops_per_step"],
        })
    return rows


def report_lines(results: list[dict], ratio_rows: list[dict], memory: str) -> list[str]:
    """Return the lines printed at the end: one per case, one per group's aegan/dcgan ratios."""
    lines = []
    for r in results:
        if "suite_peak_mib" in r:
            peak = f"peak bare {r['bare_peak_mib']:.0f} / suite {r['suite_peak_mib']:.0f} MiB"
        else:
            peak = f"process peak RSS so far {r['process_peak_rss_mib']:.0f} MiB"
        lines.append(f"{r['group']:5} {r['objective']:5} {r['image_size']:3}px w{r['width']:<3} b{r['batch']:<3} "
                     f"bare {r['bare_images_per_second']:8.1f} img/s  suite {r['suite_images_per_second']:8.1f} "
                     f"img/s  suite/bare {r['ratio']:.3f}  {r['flops_per_step'] / 1e9:.3f} GFLOP/step  {peak}")
    for row in ratio_rows:
        lines.append(f"{row['group']:5} aegan/dcgan time per step: suite {row['suite_time_ratio']:.3f}, bare "
                     f"{row['bare_time_ratio']:.3f}; FLOPs per step {row['flop_ratio']:.3f} (compute-bound ratio)")
    lines.append(f"peak memory: {memory}")
    return lines


def main() -> int:
    """Run ``python benchmarks/throughput.py``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side (plus one warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the 32 and 64 px cases")
    parser.add_argument("--limit", type=int, default=2048, help="images per epoch (first N of mnist5k; 0: all)")
    parser.add_argument("--groups", nargs="+", choices=("32", "64", "quick"), default=["32", "64", "quick"],
                        help="cases to measure (default: all)")
    parser.add_argument("--json", type=Path, default=benchutil.RESULTS_DIR / "throughput.json",
                        help="write the results to this JSON file (default: benchmarks/results/throughput.json)")
    benchutil.add_device_options(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.epochs < 1:
        parser.error(f"invalid value for --epochs: {args.epochs}; expected an integer >= 1")
    try:
        device = benchutil.setup_device(args.device, args.threads)
    except (ValueError, config.ConfigError) as error:
        parser.error(str(error))
    torch.manual_seed(0)
    selected = [case for case in cases() if case.group in args.groups]
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/mlflow.db"
        results = []
        for case in selected:
            log.info("measuring %s %s on %s", case.group, case.objective, device)
            results.append(measure(case, args.epochs, args.batch, args.limit, store, device))
    ratio_rows = ratios(results)
    memory = benchutil.memory_kind(device)
    summary = {"script": "throughput", "environment": benchutil.environment(device), "epochs": args.epochs,
               "limit": args.limit, "memory": memory, "results": results, "ratios": ratio_rows}
    print("\n".join(report_lines(results, ratio_rows, memory)))
    benchutil.write_json(args.json, summary)
    log.info("results written to %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
