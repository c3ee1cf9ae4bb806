"""The evaluator the trainer calls: ``prepare()`` once before training, ``evaluate()`` at each point.

Image data gets torch-fidelity metrics, mode coverage (labelled data), sharpness, the radius
sweep and the encoder and discriminator probes; 2-D point data gets the point protocol of
``suite.metrics.modes`` with the same probes and sweep. Key names are in ``suite.metrics.keys``.

Samples are drawn from the evaluator's own generators seeded from ``train.seed``, so every
evaluation of a run decodes the same codes, and the global torch RNG is restored afterwards.
Real reference sets are fixed subsets drawn with a constant seed, so all runs on one data set
share them and their cached features.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from suite.config import RunConfig
from suite.data import Dataset
from suite.metrics import cache, diagnostics, domain, fidelity, inception, keys, measure, modes, radius
from suite.models import Networks

log = logging.getLogger(__name__)

REFERENCE_SEED = 7  # constant: the real reference subsets never depend on a run's seed


@dataclass
class EvalResult:
    """Metrics, images and tags of one evaluation."""

    metrics: dict[str, float] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # uint8 (C, H, W)
    tags: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: float, count: int, real_count: int | None = None) -> None:
        """Record metric ``key`` with its sample count (and real reference count, if any)."""
        self.metrics[key] = float(value)
        self.metrics[keys.count_key(key)] = float(count)
        if real_count is not None:
            self.metrics[keys.real_count_key(key)] = float(real_count)


def _subset(x: torch.Tensor, count: int) -> torch.Tensor:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(REFERENCE_SEED))
    return x[order[:count]]


def resolve_extractor(name: str, dataset: Dataset) -> str:
    """Return the extractor that ``eval.extractor = name`` selects for ``dataset``."""
    if name == "auto":
        return "domain" if domain.is_labelled(dataset) else inception.NAME
    return name


@contextlib.contextmanager
def _frozen(nets: Networks, device: torch.device) -> Iterator[None]:
    """Evaluate in eval mode without gradients; restore the modes and the global RNG afterwards.

    NOTE: in eval mode G's batch norm uses running statistics, which for aegan and vaegan average
    batches of prior codes and of encoded codes (much shorter). Measured on three quick zpenalty
    runs, FID with batch statistics instead was 9 to 10 points lower for the aegan runs and 0.5
    lower for dcgan, so this mode puts aegan at a disadvantage. The radius sweep needs running
    statistics (batch statistics would undo each radius), so the choice is open.
    """
    training = {name: module.training for name, module in nets.modules().items()}
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            nets.train(False)
            yield
    finally:
        for name, module in nets.modules().items():
            module.train(training[name])


class Evaluator:
    """Computes every evaluation metric of one run; see ``suite.metrics.keys`` for the names.

    Args:
        cfg: the run config (``eval`` section, ``model.nz``, ``model.pac``, ``train.seed``).
        dataset: the loaded data set; images use its held-out split and a subset of its
            training split as real references.
        device: where G, E and D live; feature extraction runs there as well.
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        self.cfg, self.e, self.dataset = cfg, cfg.eval, dataset
        self.device = torch.device(device)
        self.points = dataset.kind == "points"
        self.stacked = domain.is_stacked(dataset)
        self.extractor = None if self.points else resolve_extractor(self.e.extractor, dataset)
        self.has_encoder = cfg.method.objective != "dcgan"
        self.spec: fidelity.ExtractorSpec | None = None  # extractor of FID, KID, IS and precision/recall
        self.domain_spec: fidelity.ExtractorSpec | None = None
        self.labeller: domain.DomainFeatureExtractor | None = None
        self.domain_acc = math.nan
        self.domain_acc_count = 0
        self.previous_modes: int | None = None
        self.real: dict[str, float] = {}
        self.prepared = False
        self.settings = fidelity.FidelitySettings(
            self.e.kid_subset_size, self.e.kid_subsets, self.e.isc_splits, self.e.prc_neighborhood,
            self.e.batch_size, cfg.train.seed, str(cache.cache_dir() / "fidelity"))
        reference_count = self.e.point_samples if self.points else self.e.num_samples
        self.real_prior = _subset(dataset.train, reference_count)
        self.real_holdout = _subset(dataset.holdout, reference_count)

    # ------------------------------------------------------------------------------------------
    # Before training

    def prepare(self) -> dict[str, str]:
        """Check sample counts and weights, obtain the domain classifier and warm real statistics.

        Returns:
            Tags to record: extractor, domain classifier and its held-out accuracy, mode protocol
            and sample-count rules.

        Raises:
            ValueError: a sample count below a metric's minimum, or a domain extractor requested
                for unlabelled data.
            suite.metrics.inception.InceptionWeightsError: the Inception weights are missing or
                damaged while that extractor is selected.
        """
        start = time.perf_counter()
        tags = {keys.TAG_MODE_PROTOCOL: self.protocol_description()}
        self._check_holdout()
        if self.points:
            self._check_point_counts()
            self.real["sample_var"] = diagnostics.total_variance(self.real_prior)
        else:
            tags.update(self._prepare_images())
        tags[keys.TAG_SAMPLE_RULES] = self.sample_rules()
        self.prepared = True
        log.info("evaluation prepared in %.1f s: %s", time.perf_counter() - start, tags)
        return tags

    def _prepare_images(self) -> dict[str, str]:
        tags = {keys.TAG_EXTRACTOR: self.extractor}
        # Missing Inception weights fail first (the file is only looked up). The count rules need
        # only the extractor's widths, so a too-small split or sample count fails next, before the
        # domain classifier trains.
        if self.extractor == "domain":
            shape = domain.shape_spec(self.dataset)
        else:
            shape = self.spec = inception.resolve(self.e.inception_weights, self.e.inception_download)
        self._check_image_counts(shape, labelled=domain.is_labelled(self.dataset))
        if self.extractor == "domain" or domain.is_labelled(self.dataset):
            trained, self.domain_spec = domain.obtain(self.dataset, self.e.classifier_epochs, self.device)
            cls = domain.PerChannelDomainFeatureExtractor if self.stacked else domain.DomainFeatureExtractor
            self.labeller = cls(self.domain_spec.name, [domain.FEATURES, domain.LOGITS],
                                feature_extractor_weights_path=self.domain_spec.weights_path).to(self.device)
            self.domain_acc, self.domain_acc_count = trained.accuracy, trained.holdout_count
            tags[keys.TAG_DOMAIN_CLASSIFIER] = str(trained.path)
            tags[keys.TAG_DOMAIN_ACC] = f"{trained.accuracy:.4f}"
        if self.extractor == "domain":
            self.spec = self.domain_spec
        self._warm_real_statistics()
        return tags

    def _check_holdout(self) -> None:
        pac = self.cfg.model.pac
        if len(self.dataset.holdout) < pac:
            raise ValueError(f"held-out metrics need at least {pac} held-out examples (model.pac), got "
                             f"{len(self.dataset.holdout)}; raise data.holdout")

    def _check_point_counts(self) -> None:
        k = len(self.dataset.centers)
        modes.check_count(self.e.point_samples, k, "eval.point_samples")
        modes.check_count(self.e.radius_samples, k, "eval.radius_samples")

    def _check_image_counts(self, spec: fidelity.ExtractorSpec, labelled: bool) -> None:
        e = self.e
        train_side = (f"the training split has only {len(self.dataset.train)} images: use more data "
                      "(raise data.limit or lower data.holdout)")
        fidelity.check_counts(spec, self.settings, measure.PRIOR_METRICS, e.num_samples, len(self.real_prior),
                              "eval.num_samples", train_side)
        fidelity.check_fid_counts(spec, e.radius_samples, len(self.real_prior), "eval.radius_samples",
                                  train_side)
        if self.has_encoder:
            # Reconstructions of the held-out images against those images: both sides are the split.
            n = len(self.real_holdout)
            held_out = f"the held-out split has only {n} images: raise data.holdout"
            fidelity.check_counts(spec, self.settings, measure.REC_METRICS, n, n, held_out, held_out)
        if labelled:
            modes.check_count(self.mode_sample_count, self.dataset.num_modes,
                              "eval.stacked_mode_samples" if self.stacked else "eval.num_samples")
            modes.check_count(e.radius_samples, self.dataset.num_modes, "eval.radius_samples")

    def cache_name(self, split: str, count: int, spec: fidelity.ExtractorSpec) -> str:
        """Return the cache entry of a real reference set: data, split, count and extractor weights."""
        return fidelity.cache_name("aegan-r1", self.dataset.fingerprint, split, count, spec.cache_id)

    def _warm_real_statistics(self) -> None:
        """Cache real features in torch-fidelity and the suite's own real statistics, once per data set."""
        references = {"train": self.real_prior}
        if self.has_encoder:
            references["holdout"] = self.real_holdout
        for split, images in references.items():
            fidelity.warm(images, self.spec, self.settings, self.device,
                          self.cache_name(split, len(images), self.spec))

        self.real["sharpness"] = radius.sharpness(self.real_prior)
        self.real["sharpness_holdout"] = radius.sharpness(self.real_holdout)
        self.real["sample_var"] = diagnostics.total_variance(self.real_prior.float() / 255)
        if self.labeller is not None:
            name = self.cache_name("train", len(self.real_prior), self.domain_spec)
            path = cache.cache_dir() / "real-stats" / f"{name}.json"
            stored = cache.read_json(path)
            if stored is None:
                features, _ = measure.label(self, self.real_prior)
                stored = {"feature_var": diagnostics.total_variance(features)}
                cache.write_json(path, stored)
            self.real["feature_var"] = stored["feature_var"]

    # ------------------------------------------------------------------------------------------
    # Descriptions recorded as tags

    @property
    def mode_sample_count(self) -> int:
        """Prior samples that mode coverage is computed on."""
        if self.points:
            return self.e.point_samples
        return self.e.stacked_mode_samples if self.stacked else self.e.num_samples

    @property
    def mode_protocol(self) -> str | None:
        """Name of the mode protocol of this data set, or None for unlabelled images."""
        if self.points:
            return "points"
        if self.stacked:
            return "stacked-mnist"
        return "classifier-share" if domain.is_labelled(self.dataset) else None

    def protocol_description(self) -> str:
        """Return the mode protocol, with its sample count and threshold, as one line."""
        protocol = self.mode_protocol
        if protocol is None:
            return "none: unlabelled image data has no modes to count"
        return modes.describe(protocol, self.mode_sample_count, self.dataset.num_modes, self.e.mode_min_share)

    def sample_rules(self) -> str:
        """Return the sample counts of this evaluation and the rules they satisfy, as one line."""
        e = self.e
        if self.points:
            return (f"{e.point_samples} prior points for modes; {e.radius_samples} points per radius; every mode "
                    f"metric needs at least as many samples as modes")
        return (f"{e.num_samples} prior samples against {len(self.real_prior)} real training images; "
                f"{len(self.real_holdout)} held-out images for reconstruction metrics; {e.radius_samples} per radius; "
                f"FID needs > {self.spec.feature_dim} (feature width) per side, KID subsets "
                f"{fidelity.KID_MIN_SUBSET}..{e.kid_subset_size}, precision/recall > k={e.prc_neighborhood}; "
                f"IS over {fidelity.isc_splits(self.spec, e.isc_splits, e.num_samples, '')} split(s) of "
                f"{self.spec.num_classes} classes")

    # ------------------------------------------------------------------------------------------
    # At each evaluation point

    def evaluate(self, nets: Networks, epoch: int, final: bool) -> EvalResult:
        """Compute every metric for the networks as they are now.

        The networks are switched to eval mode and back. Their parameters and buffers are not
        changed, and the global torch RNG state is the same afterwards.

        Args:
            nets: G, D and (unless dcgan) E, on the evaluator's device.
            epoch: the epoch just finished, for the log line.
            final: whether this is the run's last evaluation; the protocol is the same at every
                point so that curves stay comparable.

        Returns:
            Metrics with sample counts, the radius strip image (image data) and tags.
        """
        if not self.prepared:
            self.prepare()
        start = time.perf_counter()
        result = EvalResult(tags={keys.TAG_MODE_PROTOCOL: self.protocol_description()})
        with _frozen(nets, self.device):
            if self.points:
                measure.prior_points(self, nets, result)
            else:
                measure.prior_images(self, nets, result)
            measure.radius_sweep(self, nets, result)
            measure.holdout_probes(self, nets, result)
        self._flag_collapse(result)
        self._note_nonfinite(result)
        summary = {k: v for k, v in result.metrics.items() if "/" not in k}
        log.info("evaluation at epoch %d%s took %.1f s: %s", epoch, " (final)" if final else "",
                 time.perf_counter() - start, ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())))
        return result

    def _flag_collapse(self, result: EvalResult) -> None:
        variance_key = keys.with_extractor(keys.FEATURE_VAR_REL, "domain") if self.labeller else keys.SAMPLE_VAR_REL
        modes_now = result.metrics.get(keys.MODES)
        modes_now = None if modes_now is None else int(modes_now)
        reason = diagnostics.collapse_reason(result.metrics[variance_key], variance_key, modes_now,
                                             self.previous_modes, self.e.collapse_var_ratio,
                                             self.e.collapse_mode_ratio)
        result.add(keys.COLLAPSE, float(bool(reason)), int(result.metrics[keys.count_key(variance_key)]))
        if reason:
            result.tags[keys.TAG_COLLAPSE_REASON] = reason
            log.warning("collapse flagged: %s", reason)
        if modes_now is not None:
            self.previous_modes = modes_now

    @staticmethod
    def _note_nonfinite(result: EvalResult) -> None:
        bad = sorted(k for k, v in result.metrics.items() if not math.isfinite(v))
        if bad:
            result.tags[keys.TAG_NONFINITE] = (
                ", ".join(f"{k}={result.metrics[k]}" for k in bad)
                + ": a NaN KL means no sample counted towards any mode (2-D data: no high-quality sample); "
                "other non-finite values come from non-finite outputs of G or E")
