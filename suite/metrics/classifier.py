"""The domain classifier: a small CNN trained once per labelled data set and cached on disk.

It gives the evaluator a feature space that needs no download: a 64-wide penultimate layer for
FID, KID and precision/recall, and class logits for the Inception Score and for mode coverage.
Inputs are resized to 32x32 by area averaging, so one architecture serves 32, 64 and 128 px.

Each trained classifier is cached as one safetensors file per data fingerprint and training
setting in the suite's cache folder (``suite.metrics.cache``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from suite import imaging
from suite.metrics import cache

log = logging.getLogger(__name__)

ARCH_VERSION = 2  # bump when the architecture or the training recipe changes: it renames the cache
INPUT_SIZE = 32
FEATURE_DIM = 64
WIDTH = 16
SEED = 0  # constant: every run and seed of a study is measured with the same classifier
BATCH_SIZE = 128
MAX_LR = 4e-3
WEIGHT_DECAY = 5e-4
LOW_ACCURACY = 0.9  # a warning below this held-out accuracy

# Augmentation: random shifts of up to 2 px, in grid_sample's [-1, 1] units (32 px span 2).
# NOTE: on mnist5k (12 epochs, 500 held-out digits) held-out accuracy ranged 97.4-98.2% over
# seeds. Rotations, scaling, width 24, 20 epochs and a deeper trunk stayed inside that range.
SHIFT = 2 / 16


def _block(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(True)]


class DomainClassifier(nn.Module):
    """Maps images in [-1, 1] (B, in_channels, H, W) to (features (B, 64), logits (B, classes))."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        w = WIDTH
        self.trunk = nn.Sequential(
            *_block(in_channels, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), nn.MaxPool2d(2),
            *_block(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.features = nn.Linear(8 * w, FEATURE_DIM)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(FEATURE_DIM, num_classes))
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
        features = self.features(self.trunk(x))
        return features, self.head(features)


@dataclass
class Labelled:
    """Labelled uint8 images (N, C, H, W) for training or measuring the classifier."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class Trained:
    """A classifier on disk, loaded, with its held-out accuracy."""

    model: DomainClassifier
    path: Path
    accuracy: float  # on the held-out split; NaN when that split is empty
    holdout_count: int  # size of the held-out split the accuracy was measured on
    seconds: float  # training time; 0 when loaded from the cache
    from_cache: bool


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by a random sub-pixel offset; the background of [-1, 1] images stays -1."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = (torch.rand(n, 2, generator=generator) * 2 - 1) * SHIFT
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train(data: Labelled, num_classes: int, epochs: int, device: torch.device) -> DomainClassifier:
    """Train a classifier with AdamW, a one-cycle schedule and augmentation; seeds are constant.

    The global torch RNG is left as it was: weight initialisation and dropout draw from it inside
    a forked state seeded with ``SEED``.
    """
    generator = torch.Generator().manual_seed(SEED)
    count = len(data.labels)
    steps_per_epoch = math.ceil(count / BATCH_SIZE)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(SEED)  # weight initialisation and dropout draw from the global RNG
        model = DomainClassifier(data.images.shape[1], num_classes).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=MAX_LR / 10, weight_decay=WEIGHT_DECAY)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, MAX_LR, total_steps=epochs * steps_per_epoch)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator)
            for start in range(0, count, BATCH_SIZE):
                index = order[start : start + BATCH_SIZE]
                x = _augment(imaging.to_float(data.images[index]).to(device), generator)
                _, logits = model(x)
                loss = F.cross_entropy(logits, data.labels[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: DomainClassifier, data: Labelled, device: torch.device, batch_size: int = 500) -> float:
    """Return the share of ``data`` that ``model`` labels correctly; NaN for an empty set."""
    if len(data.labels) == 0:
        return math.nan
    correct = 0
    for start in range(0, len(data.labels), batch_size):
        x = imaging.to_float(data.images[start : start + batch_size]).to(device)
        _, logits = model(x)
        correct += int((logits.argmax(1).cpu() == data.labels[start : start + batch_size]).sum())
    return correct / len(data.labels)


def cache_path(fingerprint: str, in_channels: int, num_classes: int, epochs: int) -> Path:
    """Return the cache file of the classifier for one data fingerprint and training setting."""
    name = f"domain-{fingerprint}-v{ARCH_VERSION}-c{in_channels}-k{num_classes}-e{epochs}.safetensors"
    return cache.cache_dir() / "classifiers" / name


def save(model: DomainClassifier, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model`` to ``path`` as safetensors: a temporary file in the same folder, then renamed."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"in_channels": str(model.in_channels), "num_classes": str(model.num_classes), **metadata}
    cache.atomic_write(path, lambda temp: save_file(state, temp, metadata=meta))


def load(path: str | Path, device: torch.device | str = "cpu") -> DomainClassifier:
    """Load a classifier saved by ``save`` (safetensors: no pickled code runs)."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    model = DomainClassifier(int(meta["in_channels"]), int(meta["num_classes"]))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def obtain(fingerprint: str, train_data: Labelled, holdout_data: Labelled, num_classes: int, epochs: int,
           device: torch.device) -> Trained:
    """Load the cached classifier of this data set, or train, measure and cache it.

    Args:
        fingerprint: the data set's fingerprint; part of the cache file name.
        train_data: the labelled training split it learns from.
        holdout_data: the held-out split its accuracy is measured on.
        num_classes: number of labels.
        epochs: passes over ``train_data``.
        device: where it trains and runs.
    """
    path = cache_path(fingerprint, train_data.images.shape[1], num_classes, epochs)
    if path.is_file():
        model = load(path, device)
        acc = accuracy(model, holdout_data, device)
        log.info("loaded domain classifier %s: held-out accuracy %.4f", path, acc)
        trained = Trained(model, path, acc, len(holdout_data.labels), 0.0, from_cache=True)
    else:
        start = time.perf_counter()
        model = train(train_data, num_classes, epochs, device)
        seconds = time.perf_counter() - start
        acc = accuracy(model, holdout_data, device)
        save(model, path, {"fingerprint": fingerprint, "epochs": str(epochs), "accuracy": f"{acc:.6f}",
                           "train_seconds": f"{seconds:.1f}", "train_count": str(len(train_data.labels))})
        log.info("trained domain classifier on %d images in %.1f s: held-out accuracy %.4f, cached at %s",
                 len(train_data.labels), seconds, acc, path)
        trained = Trained(model, path, acc, len(holdout_data.labels), seconds, from_cache=False)
    if acc < LOW_ACCURACY:
        log.warning("domain classifier held-out accuracy %.4f is below %.2f: FID, modes and the other metrics "
                    "in its feature space are unreliable; raise eval.classifier_epochs or use more data", acc,
                    LOW_ACCURACY)
    return trained
