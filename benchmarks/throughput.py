"""Training-step throughput of the suite against a bare reference loop, on the current device.

Run by hand, never from the tests:

    python benchmarks/throughput.py                 # dcgan and aegan at 32 and 64 px
    python benchmarks/throughput.py --json out.json

The suite side is ``suite.loop.run_epoch``: the real step, statistics kept on the device, a
finiteness check, sparse MLflow logging into a temporary SQLite store and a (hidden) progress
bar. The bare side is written here: the same networks, optimisers and loss terms in a plain
loop with no tracking, no statistics and no checks. Both see the same data, batch size and
number of steps; the first epoch of each is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from suite import config, data, loop, tracking, train

CASES = [  # (objective, image size, channels, base width)
    ("dcgan", 32, 1, 32),
    ("aegan", 32, 1, 32),
    ("dcgan", 64, 3, 64),
    ("aegan", 64, 3, 64),
]


def make_config(objective: str, size: int, channels: int, width: int, batch: int, limit: int) -> config.RunConfig:
    return config.load(overrides=[
        f"objective={objective}", f"image_size={size}", f"channels={channels}", f"ngf={width}", f"ndf={width}",
        f"nef={width}", f"batch_size={batch}", f"data.limit={limit}", "data.holdout=0", "eval.enabled=false",
        "z_penalty=0.01",
    ])


def bare_epoch(state: loop.Loop, epoch: int) -> None:
    """Run one epoch of the same update written plainly, without statistics, checks or logging."""
    nets, opt, method = state.nets, state.optimizers, state.cfg.method
    bce = F.binary_cross_entropy_with_logits
    for x in state.batches(epoch):
        z = torch.randn(x.shape[0], state.cfg.model.nz, device=state.device)
        x_fake = nets.G(z)
        if nets.E is not None:
            z_enc = nets.E(x)
            x_rec = nets.G(z_enc)
        real, fake = nets.D(x), nets.D(x_fake.detach())
        loss_D = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
        opt["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opt["D"].step()

        fake = nets.D(x_fake)
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


def measure(case: tuple, epochs: int, batch: int, limit: int, store: str) -> dict:
    objective, size, channels, width = case
    cfg = make_config(objective, size, channels, width, batch, limit)
    dataset = data.load(cfg.data)
    device = train.resolve_device(cfg.train.device)
    images_per_epoch = (len(dataset.train) // batch) * batch
    result = {"objective": objective, "image_size": size, "channels": channels, "width": width, "batch": batch,
              "images_per_epoch": images_per_epoch, "device": str(device)}

    def timed(run_one) -> float:
        rates = []
        for epoch in range(epochs + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            run_one(epoch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if epoch > 0:  # the first epoch warms up allocators and kernels
                rates.append(images_per_epoch / (time.perf_counter() - started))
        return statistics.median(rates)

    bare = loop.Loop(cfg, dataset, device)
    result["bare_images_per_second"] = timed(lambda epoch: bare_epoch(bare, epoch + 1))

    suite_loop = loop.Loop(cfg, dataset, device)
    run = tracking.Run.start("benchmark", f"{objective}-{size}", config.flatten(cfg), uri=store)
    with tqdm(disable=True) as bar:
        result["suite_images_per_second"] = timed(lambda epoch: loop.run_epoch(suite_loop, run, bar))
    run.end()
    result["ratio"] = result["suite_images_per_second"] / result["bare_images_per_second"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side (plus one warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--limit", type=int, default=2048, help="images per epoch (first N of mnist5k)")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/mlflow.db"
        results = [measure(case, args.epochs, args.batch, args.limit, store) for case in CASES]
    by_key = {(r["objective"], r["image_size"]): r for r in results}
    for size in (32, 64):
        by_key[("aegan", size)]["aegan_over_dcgan_step_time"] = (
            by_key[("dcgan", size)]["suite_images_per_second"] / by_key[("aegan", size)]["suite_images_per_second"]
        )
    summary = {
        "machine": platform.platform(), "processor": platform.processor(), "python": sys.version.split()[0],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": results,
    }
    for r in results:
        print(f"{r['objective']:6} {r['image_size']:3}px  bare {r['bare_images_per_second']:7.1f} img/s  "
              f"suite {r['suite_images_per_second']:7.1f} img/s  ratio {r['ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
