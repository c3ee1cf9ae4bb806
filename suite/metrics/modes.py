"""Mode coverage: how many of a data set's modes the generated samples reach, and how evenly.

Three protocols, each recorded with every result by its ``description``:

- ``classifier-share`` (labelled images with few classes, e.g. mnist5k): the domain classifier
  labels N samples; a class counts as covered when it receives at least
  ``max(1, ceil(min_share * N / K))`` samples, i.e. ``min_share`` of its share under a uniform
  histogram, so that a few misclassified samples do not count as a mode.
- ``stacked-mnist`` (the protocol of VEEGAN and PacGAN): the single-digit
  classifier labels each channel, giving one of 1,000 modes. A mode counts as covered when it
  receives at least one sample. The published protocol draws 26,000 samples.
- ``points`` (PacGAN's 2-D protocol): a sample is high quality when its Euclidean distance to
  the nearest mixture centre is at most 3 standard deviations. A mode counts as covered when at
  least one high-quality sample lies nearest to it. ``hq_share`` is the high-quality share.

``kl`` is KL(p || uniform) in nats, where p is the histogram of generated labels (for points:
of the high-quality samples only), with 0 * log 0 = 0. It is 0 for a uniform histogram and
log K when every sample falls into one mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

HQ_STDS = 3.0


@dataclass
class Coverage:
    """Mode coverage of one set of samples."""

    modes: int  # modes covered
    kl: float  # KL(histogram || uniform) in nats; NaN when no sample counts
    count: int  # samples evaluated
    hq_share: float | None = None  # points only: share of high-quality samples


def histogram(labels: torch.Tensor, num_modes: int) -> torch.Tensor:
    """Return the int64 count of each label 0..num_modes-1 in ``labels``."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_modes):
        raise ValueError(f"labels must lie in 0..{num_modes - 1}; got {int(labels.min())}..{int(labels.max())}")
    return torch.bincount(labels.flatten().long(), minlength=num_modes)


def kl_to_uniform(counts: torch.Tensor) -> float:
    """Return KL(counts / sum || uniform) in nats; NaN for an all-zero histogram."""
    total = counts.sum().item()
    if total == 0:
        return math.nan
    p = counts.double() / total
    present = p > 0
    return float((p[present] * (p[present] * len(counts)).log()).sum())


def min_count(count: int, num_modes: int, min_share: float) -> int:
    """Return the samples a class needs to count as covered under ``classifier-share``."""
    return max(1, math.ceil(min_share * count / num_modes))


class SampleCountError(ValueError):
    """A sample count or data split below what a metric needs; the message names the setting to change."""


def check_count(count: int, num_modes: int, setting: str) -> None:
    """Raise SampleCountError when ``count`` samples cannot reach all ``num_modes`` modes."""
    if count < num_modes:
        raise SampleCountError(f"mode coverage over {num_modes} modes needs at least {num_modes} samples, got "
                         f"{count}; raise {setting}")


def label_coverage(labels: torch.Tensor, num_modes: int, threshold: int) -> Coverage:
    """Return coverage of predicted ``labels``: a mode counts with at least ``threshold`` samples."""
    counts = histogram(labels, num_modes)
    return Coverage(int((counts >= threshold).sum()), kl_to_uniform(counts), int(labels.numel()))


def stacked_labels(logits: torch.Tensor) -> torch.Tensor:
    """Return the mode labels from the per-channel extractor's 1,000 joint logits (argmax)."""
    return logits.argmax(1)


def point_coverage(points: torch.Tensor, centers: torch.Tensor, std: float) -> Coverage:
    """Return PacGAN's coverage of 2-D ``points`` (N, 2) around ``centers`` (K, 2)."""
    if points.dim() != 2 or points.shape[1] != centers.shape[1]:
        raise ValueError(f"expected points of shape (N, {centers.shape[1]}), got {tuple(points.shape)}")
    distances = torch.cdist(points.double(), centers.double())
    nearest, labels = distances.min(1)
    high_quality = nearest <= HQ_STDS * std
    counts = histogram(labels[high_quality], len(centers))
    share = float(high_quality.double().mean()) if len(points) else math.nan
    return Coverage(int((counts > 0).sum()), kl_to_uniform(counts), len(points), hq_share=share)


def describe(protocol: str, count: int, num_modes: int, min_share: float) -> str:
    """Return the one-line description of a protocol that is recorded with its results."""
    if protocol == "classifier-share":
        need = min_count(count, num_modes, min_share)
        return (f"classifier-share: domain classifier labels {count} prior samples; a class of {num_modes} "
                f"counts with >= {need} samples ({min_share:g} of a uniform share); KL(p || uniform) in nats")
    if protocol == "stacked-mnist":
        return (f"stacked-mnist (VEEGAN/PacGAN): per-channel digit classifier labels {count} prior samples "
                f"over {num_modes} modes; a mode counts with >= 1 sample; KL(p || uniform) in nats")
    if protocol == "points":
        return (f"points (PacGAN): {count} prior samples; high quality within {HQ_STDS:g} std (Euclidean) of "
                f"the nearest of {num_modes} centres; a mode counts with >= 1 high-quality sample; "
                f"KL(p_hq || uniform) in nats")
    raise ValueError(f"unknown mode protocol {protocol!r}")
