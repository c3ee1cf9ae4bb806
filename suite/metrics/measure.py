"""The measurements of one evaluation, each a function of the ``Evaluator`` that keeps the state.

Every function runs inside the evaluator's no-grad, eval-mode, RNG-preserving context and adds
its metrics, with sample counts, to the ``EvalResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from suite import imaging
from suite.metrics import diagnostics, fidelity, keys, modes, radius
from suite.models import Networks
from suite.objectives import pack

if TYPE_CHECKING:
    from suite.metrics.evaluator import EvalResult, Evaluator

PRIOR_METRICS = {"fid", "kid", "isc", "prc"}
REC_METRICS = {"fid", "kid"}
DIRECTION_SEED_OFFSET = 1  # the sweep's directions come from seed + 1, apart from the prior draws


def decode(ev: Evaluator, G: torch.nn.Module, z: torch.Tensor,
           D: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return G(z) on the CPU (uint8 images, or float points) and, with ``D``, D's logits on G(z).

    D judges the float outputs before the uint8 conversion, packed as in training. The samples
    beyond the last whole group of ``pac`` in each batch are not judged.
    """
    pac = ev.cfg.model.pac
    step = max(pac, ev.e.batch_size - ev.e.batch_size % pac)
    samples, logits = [], []
    for chunk in z.split(step):
        x = G(chunk.to(ev.device)).float()
        samples.append(x.cpu() if ev.points else imaging.to_uint8(x).cpu())
        usable = len(x) - len(x) % pac
        if D is not None and usable:
            with diagnostics.batch_statistics(D):  # D judges with batch statistics, as in training
                logits.append(D(pack(x[:usable], pac)).float().cpu())
    return torch.cat(samples), (torch.cat(logits) if D is not None else None)


def label(ev: Evaluator, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the domain classifier's (features, logits) of uint8 images, on the CPU."""
    features, logits = [], []
    for chunk in images.split(ev.e.batch_size):
        f, lg = ev.labeller(imaging.to_rgb(chunk).to(ev.device))
        features.append(f.cpu())
        logits.append(lg.cpu())
    return torch.cat(features), torch.cat(logits)


def coverage(ev: Evaluator, samples: torch.Tensor) -> modes.Coverage:
    """Return the mode coverage of prior samples: points, or uint8 images for the domain classifier."""
    if ev.points:
        return modes.point_coverage(samples, ev.dataset.centers, ev.dataset.std)
    _, logits = label(ev, samples)
    return logit_coverage(ev, logits)


def logit_coverage(ev: Evaluator, logits: torch.Tensor) -> modes.Coverage:
    """Return the mode coverage of samples from the domain classifier's logits (N, modes)."""
    labels = logits.argmax(1)
    threshold = 1 if ev.stacked else modes.min_count(len(labels), ev.dataset.num_modes, ev.e.mode_min_share)
    return modes.label_coverage(labels, ev.dataset.num_modes, threshold)


def _add_coverage(result: EvalResult, found: modes.Coverage, at_radius: float | None) -> None:
    def name(key: str) -> str:
        return key if at_radius is None else keys.radius_key(at_radius, key)

    result.add(name(keys.MODES), found.modes, found.count)
    if at_radius is None:
        result.add(keys.MODES_KL, found.kl, found.count)
    if found.hq_share is not None:
        result.add(name(keys.HQ_SHARE), found.hq_share, found.count)


def _prior_codes(ev: Evaluator, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(ev.cfg.train.seed)
    return torch.randn(count, ev.cfg.model.nz, generator=generator)


def _add_d_fake(ev: Evaluator, result: EvalResult, logits: torch.Tensor) -> None:
    result.add(keys.D_ACC_FAKE, float((logits < 0).double().mean()), len(logits) * ev.cfg.model.pac)


def prior_images(ev: Evaluator, nets: Networks, result: EvalResult) -> None:
    """Add torch-fidelity metrics, sharpness, variance and modes of prior samples G(z)."""
    n = ev.e.num_samples
    fake, d_logits = decode(ev, nets.G, _prior_codes(ev, max(n, ev.mode_sample_count)), nets.D)
    _add_d_fake(ev, result, d_logits)
    prior = fake[:n]

    real_name = ev.cache_name("train", len(ev.real_prior), ev.spec)
    scores = fidelity.compare(prior, ev.real_prior, ev.spec, ev.settings, ev.device, PRIOR_METRICS, real_name)
    for name, value in scores.items():
        real_count = None if name.startswith("is_") else len(ev.real_prior)
        result.add(keys.with_extractor(name, ev.extractor), value, n, real_count)

    result.add(keys.SHARPNESS_REL, radius.sharpness(prior) / ev.real["sharpness"], n)
    result.add(keys.SAMPLE_VAR_REL, diagnostics.total_variance(prior.float() / 255) / ev.real["sample_var"], n)
    if ev.labeller is not None:
        features, logits = label(ev, fake)
        variance = diagnostics.total_variance(features[:n]) / ev.real["feature_var"]
        result.add(keys.with_extractor(keys.FEATURE_VAR_REL, "domain"), variance, n)
        _add_coverage(result, logit_coverage(ev, logits[: ev.mode_sample_count]), None)
        result.add(keys.DOMAIN_ACC, ev.domain_acc, ev.domain_acc_count)


def prior_points(ev: Evaluator, nets: Networks, result: EvalResult) -> None:
    """Add PacGAN's mode metrics and the variance of prior points G(z) of 2-D data."""
    fake, d_logits = decode(ev, nets.G, _prior_codes(ev, ev.e.point_samples), nets.D)
    _add_d_fake(ev, result, d_logits)
    _add_coverage(result, coverage(ev, fake), None)
    result.add(keys.SAMPLE_VAR_REL, diagnostics.total_variance(fake) / ev.real["sample_var"], len(fake))


def radius_sweep(ev: Evaluator, nets: Networks, result: EvalResult) -> None:
    """Decode codes of norm r * sqrt(nz) along fixed directions; add FID, sharpness and modes per r."""
    generator = torch.Generator().manual_seed(ev.cfg.train.seed + DIRECTION_SEED_OFFSET)
    unit = radius.directions(ev.e.radius_samples, ev.cfg.model.nz, generator)
    real_name = None if ev.points else ev.cache_name("train", len(ev.real_prior), ev.spec)
    strip_rows = []
    for r in ev.e.radii:
        samples, _ = decode(ev, nets.G, radius.codes(unit, r))
        count = len(samples)
        if ev.points:
            _add_coverage(result, coverage(ev, samples), r)
            continue
        strip_rows.append(samples[: ev.e.strip_rows])
        fid = fidelity.compare(samples, ev.real_prior, ev.spec, ev.settings, ev.device, {"fid"}, real_name,
                               "eval.radius_samples")["fid"]
        result.add(keys.radius_key(r, keys.with_extractor(keys.FID, ev.extractor)), fid, count, len(ev.real_prior))
        result.add(keys.radius_key(r, keys.SHARPNESS_REL), radius.sharpness(samples) / ev.real["sharpness"], count)
        if ev.labeller is not None:
            _add_coverage(result, coverage(ev, samples), r)
    if strip_rows:
        result.images[keys.RADIUS_STRIP] = radius.strip(torch.stack(strip_rows, dim=1))


def holdout_probes(ev: Evaluator, nets: Networks, result: EvalResult) -> None:
    """Add D's accuracy on held-out data and, with an encoder, code norms and reconstruction metrics."""
    holdout_images = ev.real_holdout
    x = holdout_images if ev.points else imaging.to_float(holdout_images)
    pac, batch, device = ev.cfg.model.pac, ev.e.batch_size, ev.device
    accuracy, judged = diagnostics.d_accuracy(nets.D, x, True, pac, batch, device)
    result.add(keys.D_ACC_REAL, accuracy, judged)
    if nets.E is None:
        return

    codes = diagnostics.batched(nets.encode, x, batch, device).float()
    for stat, value in diagnostics.code_norm_stats(codes, ev.cfg.model.nz).items():
        result.add(keys.code_norm_key(stat), value, len(codes))
    x_rec = diagnostics.batched(nets.G, codes, batch, device).float()
    result.add(keys.RECON_ERROR, diagnostics.mean_squared_error(x_rec, x), len(x))
    accuracy, judged = diagnostics.d_accuracy(nets.D, x_rec, False, pac, batch, device)
    result.add(keys.D_ACC_REC, accuracy, judged)
    if ev.points:
        return

    rec = imaging.to_uint8(x_rec)
    n = len(rec)
    real_name = ev.cache_name("holdout", n, ev.spec)
    scores = fidelity.compare(rec, holdout_images, ev.spec, ev.settings, ev.device, REC_METRICS, real_name,
                              "data.holdout")
    result.add(keys.with_extractor(keys.FID_REC, ev.extractor), scores["fid"], n, n)
    result.add(keys.with_extractor(keys.KID_REC_MEAN, ev.extractor), scores["kid_mean"], n, n)
    result.add(keys.with_extractor(keys.KID_REC_STD, ev.extractor), scores["kid_std"], n, n)
    result.add(keys.SHARPNESS_REL_REC, radius.sharpness(rec) / ev.real["sharpness_holdout"], n)
