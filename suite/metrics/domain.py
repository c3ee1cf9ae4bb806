"""The domain classifier as a torch-fidelity feature extractor, and how a data set gets one.

Two extractors are registered with torch-fidelity when this module is imported:

- ``aegan-domain``: the classifier applied to the image as it is (gray images, which reach
  torch-fidelity as RGB with three equal channels, use channel 0).
- ``aegan-domain-per-channel``: for stacked-mnist, the single-digit classifier applied to each
  of the three channels. Its features are the three 64-wide feature vectors side by side (192),
  and its logits are the 1,000 joint log-probabilities ``log p0(a) + log p1(b) + log p2(c)`` at
  index ``100a + 10b + c``, the data set's mode label. A softmax of them gives back the product of
  the per-channel class probabilities.

Both provide the layers ``features`` (FID, KID, precision/recall) and ``logits`` (IS, modes).
torch-fidelity builds the extractor itself from the registered class; the classifier file
reaches it as ``feature_extractor_weights_path``.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from suite import data, imaging
from suite.config import DataConfig
from suite.metrics import classifier
from suite.metrics.fidelity import ExtractorSpec

NAME = "aegan-domain"
NAME_PER_CHANNEL = "aegan-domain-per-channel"
FEATURES = "features"
LOGITS = "logits"
STACKED_CHANNELS = 3


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over a cached ``DomainClassifier``; input uint8 (B, 3, H, W)."""

    per_channel = False

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs):
        super().__init__(name, features_list)
        if not feature_extractor_weights_path:
            raise ValueError(f"the {name} feature extractor needs feature_extractor_weights_path: the "
                             "classifier file that suite.metrics.classifier caches")
        self.classifier = classifier.load(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, str]:
        return (FEATURES, LOGITS)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LOGITS if metric == "isc" else FEATURES

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, classifier.INPUT_SIZE, classifier.INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        if self.per_channel:
            features, logits = self._per_channel(x)
        else:
            if self.classifier.in_channels == 1:
                x = x[:, :1]
            features, logits = self.classifier(imaging.to_float(x))
        found = {FEATURES: features.float(), LOGITS: logits.float()}
        return tuple(found[name] for name in self.features_list)

    def _per_channel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, height, width = x.shape
        single = imaging.to_float(x.reshape(batch * channels, 1, height, width))
        features, logits = self.classifier(single)
        log_p = logits.log_softmax(1).reshape(batch, channels, -1)
        joint = log_p[:, 0, :, None, None] + log_p[:, 1, None, :, None] + log_p[:, 2, None, None, :]
        return features.reshape(batch, -1), joint.flatten(1)


class PerChannelDomainFeatureExtractor(DomainFeatureExtractor):
    """``DomainFeatureExtractor`` applied to each channel of stacked-mnist images."""

    per_channel = True


def register() -> None:
    """Register both extractors with torch-fidelity (a second call does nothing)."""
    for name, cls in ((NAME, DomainFeatureExtractor), (NAME_PER_CHANNEL, PerChannelDomainFeatureExtractor)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


register()


def is_stacked(dataset) -> bool:
    """Return True for data whose channels each hold one labelled digit (stacked-mnist)."""
    return dataset.kind == "image" and getattr(dataset, "digit_labels", None) is not None


def is_labelled(dataset) -> bool:
    """Return True for image data with mode labels, which the domain extractor can learn."""
    return dataset.kind == "image" and dataset.train_labels is not None and dataset.num_modes > 0


def _training_data(dataset) -> tuple[str, classifier.Labelled, classifier.Labelled, int]:
    """Return (fingerprint, train, holdout, classes) of the data the classifier learns from.

    stacked-mnist gets a single-digit classifier trained on mnist5k with mnist5k's own split:
    stacked images reuse each mnist5k digit many times, so their channels have no held-out
    digits to measure accuracy on.
    """
    if is_stacked(dataset):
        digits = data.load(DataConfig(source="mnist5k", image_size=classifier.INPUT_SIZE, channels=1))
        return (digits.fingerprint, classifier.Labelled(digits.train, digits.train_labels),
                classifier.Labelled(digits.holdout, digits.holdout_labels), digits.num_modes)
    return (dataset.fingerprint, classifier.Labelled(dataset.train, dataset.train_labels),
            classifier.Labelled(dataset.holdout, dataset.holdout_labels), dataset.num_modes)


def obtain(dataset, epochs: int, device: torch.device) -> tuple[classifier.Trained, ExtractorSpec]:
    """Load or train the domain classifier of ``dataset`` and describe its registered extractor.

    Raises:
        ValueError: the data set is not labelled image data.
    """
    if not is_labelled(dataset):
        raise ValueError(f"the domain extractor needs labelled image data; {dataset.source!r} has no "
                         "labels: use eval.extractor = \"inception-v3-compat\"")
    fingerprint, train_data, holdout_data, classes = _training_data(dataset)
    trained = classifier.obtain(fingerprint, train_data, holdout_data, classes, epochs, device)
    weights_digest = hashlib.sha256(trained.path.read_bytes()).hexdigest()[:12]
    spec = dataclasses.replace(shape_spec(dataset), weights_path=str(trained.path),
                               cache_id=f"{trained.path.stem.removeprefix('domain-')}-{weights_digest}")
    return trained, spec


def shape_spec(dataset) -> ExtractorSpec:
    """Describe the extractor of ``dataset`` without its weights: enough for the count rules.

    Raises:
        ValueError: the data set is not labelled image data.
    """
    if not is_labelled(dataset):
        raise ValueError(f"the domain extractor needs labelled image data; {dataset.source!r} has no "
                         "labels: use eval.extractor = \"inception-v3-compat\"")
    stacked = is_stacked(dataset)
    return ExtractorSpec(
        name=NAME_PER_CHANNEL if stacked else NAME,
        feature_layer=FEATURES,
        logits_layer=LOGITS,
        feature_dim=classifier.FEATURE_DIM * (STACKED_CHANNELS if stacked else 1),
        num_classes=dataset.num_modes,  # stacked-mnist: 10 ** 3 digit triples
        weights_path="",
        cache_id="",
    )
