"""The one place that calls torch-fidelity: keyword arguments, sample-count rules and key names.

torch-fidelity (0.4.0) treats ``input1`` as the generated set and ``input2`` as the real set:
precision is the share of ``input1`` samples inside the k-NN balls of ``input2``, recall the
share of ``input2`` samples inside the balls of ``input1`` (``metric_prc.py``). Real images
therefore always go in as ``input2``, which is also the input whose features are cached.

torch-fidelity silently ignores keyword arguments it does not know, so every call is built by
``fidelity_kwargs``, which rejects any name missing from ``torch_fidelity.defaults.DEFAULTS``.

Sample-count rules (each violation is a ``ValueError`` naming the count and the minimum):

- FID: at least ``feature_dim + 1`` samples on each side, the fewest for which a sample
  covariance of the features can have full rank.
- KID: the subset size is ``min(eval.kid_subset_size, n_generated, n_real)`` and must be at
  least ``KID_MIN_SUBSET``.
- Precision/recall: more than ``k`` samples on each side, so that every sample has a k-th
  nearest neighbour other than itself.
- Inception Score: no minimum beyond one sample. The number of splits is
  ``max(1, min(eval.isc_splits, n // classes))``, so a split contains at least as many samples
  as there are classes whenever the count allows. IS cannot exceed the samples in a split, so with
  fewer samples than classes (stacked-mnist's 1,000, Inception's 1,008) it is not comparable to
  published values, only to other runs with the same count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch_fidelity
from torch.utils.data import Dataset as TorchDataset
from torch_fidelity.defaults import DEFAULTS

from suite import imaging
from suite.metrics.modes import SampleCountError

# NOTE: a judgement call, not a published threshold: below 100 samples per subset the spread of
# KID over subsets is of the order of the differences between models worth telling apart.
KID_MIN_SUBSET = 100

_RESULT_NAMES = {
    torch_fidelity.KEY_METRIC_FID: "fid",
    torch_fidelity.KEY_METRIC_KID_MEAN: "kid_mean",
    torch_fidelity.KEY_METRIC_KID_STD: "kid_std",
    torch_fidelity.KEY_METRIC_ISC_MEAN: "is_mean",
    torch_fidelity.KEY_METRIC_ISC_STD: "is_std",
    torch_fidelity.KEY_METRIC_PRECISION: "precision",
    torch_fidelity.KEY_METRIC_RECALL: "recall",
    torch_fidelity.KEY_METRIC_F_SCORE: "f_score",
}
METRIC_NAMES = frozenset(("fid", "kid", "isc", "prc"))


@dataclass(frozen=True)
class ExtractorSpec:
    """A feature extractor registered with torch-fidelity, and what the count rules need of it."""

    name: str  # registered torch-fidelity name
    feature_layer: str  # layer for FID, KID and precision/recall
    logits_layer: str  # layer for the Inception Score (torch-fidelity applies the softmax)
    feature_dim: int  # width of ``feature_layer``
    num_classes: int  # width of ``logits_layer``
    weights_path: str  # passed as ``feature_extractor_weights_path``; never downloaded
    cache_id: str  # short id of the weights, part of every cached real-feature name


@dataclass(frozen=True)
class FidelitySettings:
    """Evaluation settings that reach torch-fidelity."""

    kid_subset_size: int
    kid_subsets: int
    isc_splits: int
    prc_neighborhood: int
    batch_size: int
    rng_seed: int
    cache_root: str


class ImageTensors(TorchDataset):
    """uint8 images (N, C, H, W) served as RGB (3, H, W) tensors, the layout torch-fidelity takes."""

    def __init__(self, images: torch.Tensor):
        check_images(images, "images")
        self.images = imaging.to_rgb(images.cpu())

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def check_images(images: torch.Tensor, role: str) -> None:
    """Raise ValueError unless ``images`` is a uint8 (N, C, H, W) batch of 1 or 3 channels."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"image metrics need uint8 images (N, 1 or 3, H, W); {role} is {images.dtype} of shape "
            f"{tuple(images.shape)}. 2-D point data gets only the point metrics (modes, hq_share)"
        )


def cache_name(*parts: object) -> str:
    """Join ``parts`` into a torch-fidelity cache entry name (no path separators)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(str(p) for p in parts))


# ----------------------------------------------------------------------------------------------
# Sample-count rules


def _require(metric: str, count: int, minimum: int, what: str, setting: str) -> None:
    """Raise ValueError when ``count < minimum``; ``setting`` is the setting to raise, or a whole fix."""
    if count < minimum:
        fix = setting if " " in setting else f"raise {setting}"
        raise SampleCountError(
            f"{metric} needs at least {minimum} {what} samples, got {count}; {fix} "
            f"(rules in suite.metrics.fidelity)"
        )


# How to get more real images, for callers that name no setting of their own.
REAL_SETTING = "use more real images (data.limit, data.holdout)"


def check_fid_counts(spec: ExtractorSpec, n_gen: int, n_real: int, setting: str,
                     real_setting: str = REAL_SETTING) -> None:
    """Raise ValueError when either side has at most ``feature_dim`` samples."""
    minimum = spec.feature_dim + 1
    metric = f"FID with {spec.feature_dim}-dimensional {spec.name} features"
    _require(metric, n_gen, minimum, "generated", setting)
    _require(metric, n_real, minimum, "real", real_setting)


def kid_subset_size(configured: int, n_gen: int, n_real: int, setting: str,
                    real_setting: str = REAL_SETTING) -> int:
    """Return the KID subset size for these counts; raise ValueError below ``KID_MIN_SUBSET``."""
    _require("KID", n_gen, KID_MIN_SUBSET, "generated", setting)
    _require("KID", n_real, KID_MIN_SUBSET, "real", real_setting)
    _require("KID", configured, KID_MIN_SUBSET, "subset", "eval.kid_subset_size")
    return min(configured, n_gen, n_real)


def check_prc_counts(k: int, n_gen: int, n_real: int, setting: str, real_setting: str = REAL_SETTING) -> None:
    """Raise ValueError unless both sides have more than ``k`` samples."""
    _require(f"precision/recall with k={k}", n_gen, k + 1, "generated", setting)
    _require(f"precision/recall with k={k}", n_real, k + 1, "real", real_setting)


def isc_splits(spec: ExtractorSpec, configured: int, n_gen: int, setting: str) -> int:
    """Return the Inception Score split count for ``n_gen`` samples; raise ValueError for none."""
    _require("Inception Score", n_gen, 1, "generated", setting)
    return max(1, min(configured, n_gen // spec.num_classes))


def check_counts(spec: ExtractorSpec, settings: FidelitySettings, metrics: set[str], n_gen: int,
                 n_real: int, setting: str, real_setting: str = REAL_SETTING) -> None:
    """Apply every count rule of ``metrics`` (names in ``METRIC_NAMES``) to one comparison.

    ``setting`` and ``real_setting`` name what raises the generated and the real count.
    """
    unknown = metrics - METRIC_NAMES
    if unknown:
        raise ValueError(f"unknown metric names {sorted(unknown)}; expected some of {sorted(METRIC_NAMES)}")
    if "fid" in metrics:
        check_fid_counts(spec, n_gen, n_real, setting, real_setting)
    if "kid" in metrics:
        kid_subset_size(settings.kid_subset_size, n_gen, n_real, setting, real_setting)
    if "prc" in metrics:
        check_prc_counts(settings.prc_neighborhood, n_gen, n_real, setting, real_setting)
    if "isc" in metrics:
        isc_splits(spec, settings.isc_splits, n_gen, setting)


# ----------------------------------------------------------------------------------------------
# Calls


def fidelity_kwargs(spec: ExtractorSpec, settings: FidelitySettings, device: torch.device,
                    metrics: set[str], n_gen: int, n_real: int, real_cache_name: str | None,
                    setting: str = "eval.num_samples") -> dict[str, Any]:
    """Build the keyword arguments of one ``torch_fidelity.calculate_metrics`` call, inputs left out.

    Every count rule is checked here. Precision/recall use the FID layer of the same extractor
    (torch-fidelity would otherwise load VGG16 for them). ``save_cpu_ram`` makes torch-fidelity
    read inputs in the main process (it starts 4 DataLoader workers otherwise).

    Raises:
        ValueError: a count below a rule's minimum, an unknown metric or an unknown kwarg name.
    """
    check_counts(spec, settings, metrics, n_gen, n_real, setting)
    kwargs: dict[str, Any] = {
        "cuda": device.type == "cuda",
        "batch_size": settings.batch_size,
        "fid": "fid" in metrics,
        "kid": "kid" in metrics,
        "isc": "isc" in metrics,
        "prc": "prc" in metrics,
        "feature_extractor": spec.name,
        "feature_extractor_weights_path": spec.weights_path,
        "feature_layer_fid": spec.feature_layer,
        "feature_layer_kid": spec.feature_layer,
        "feature_layer_prc": spec.feature_layer,
        "feature_layer_isc": spec.logits_layer,
        "kid_subsets": settings.kid_subsets,
        "prc_neighborhood": settings.prc_neighborhood,
        "rng_seed": settings.rng_seed,
        "save_cpu_ram": True,
        "cache": real_cache_name is not None,
        "cache_root": settings.cache_root,
        "input2_cache_name": real_cache_name,
        "datasets_download": False,
        "verbose": False,
    }
    if "kid" in metrics:
        kwargs["kid_subset_size"] = kid_subset_size(settings.kid_subset_size, n_gen, n_real, setting)
    if "isc" in metrics:
        kwargs["isc_splits"] = isc_splits(spec, settings.isc_splits, n_gen, setting)
    return checked_kwargs(kwargs)


def checked_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return ``kwargs`` unchanged; raise ValueError naming any name torch-fidelity does not know."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown torch-fidelity arguments {unknown}; it would ignore them silently")
    return kwargs


def compare(generated: torch.Tensor, real: torch.Tensor, spec: ExtractorSpec, settings: FidelitySettings,
            device: torch.device, metrics: set[str], real_cache_name: str | None,
            setting: str = "eval.num_samples") -> dict[str, float]:
    """Compute ``metrics`` of uint8 ``generated`` images against uint8 ``real`` images.

    Args:
        generated: uint8 (N, 1 or 3, H, W) generated or reconstructed images (torch-fidelity input1).
        real: uint8 (M, 1 or 3, H, W) real images (input2); its features are cached under
            ``real_cache_name`` in ``settings.cache_root`` unless that is None.
        spec: the registered feature extractor.
        settings: subset sizes, splits, k, batch size, seed and cache folder.
        device: CUDA runs torch-fidelity on the GPU; anything else on the CPU.
        metrics: some of ``fid``, ``kid``, ``isc``, ``prc``.
        real_cache_name: cache entry of the real features; it must change whenever ``real``,
            the extractor weights or the sample count change.
        setting: the config key named in count errors.

    Returns:
        ``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``, ``recall``
        and ``f_score``, as far as requested.

    Raises:
        ValueError: point data or non-uint8 images, or a count below a rule's minimum.
    """
    check_images(generated, "the generated set")
    check_images(real, "the real set")
    kwargs = fidelity_kwargs(spec, settings, device, metrics, len(generated), len(real), real_cache_name, setting)
    kwargs["input1"] = ImageTensors(generated)
    kwargs["input2"] = ImageTensors(real)
    raw = _calculate(kwargs, device)
    return {_RESULT_NAMES[key]: float(value) for key, value in raw.items()}


def warm(real: torch.Tensor, spec: ExtractorSpec, settings: FidelitySettings, device: torch.device,
         real_cache_name: str) -> None:
    """Extract and cache the features and FID statistics of ``real`` for every layer ``compare`` reads.

    torch-fidelity is asked for FID and IS of ``real`` against itself with both inputs under the
    same cache name, so the features are extracted once: the second input reads the first's cache.
    """
    check_images(real, "the real set")
    kwargs = fidelity_kwargs(spec, settings, device, {"fid"}, len(real), len(real), real_cache_name)
    kwargs.update(isc=True, isc_splits=1, input1_cache_name=real_cache_name)
    kwargs["input1"] = kwargs["input2"] = ImageTensors(real)
    _calculate(checked_kwargs(kwargs), device)


def _calculate(kwargs: dict[str, Any], device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch_fidelity.calculate_metrics(**kwargs)
    return torch_fidelity.calculate_metrics(**kwargs)

