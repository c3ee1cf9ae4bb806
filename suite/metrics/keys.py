"""Names of every metric the evaluator logs, as constants and small key builders.

Metrics computed in a feature space carry the extractor's short name (``domain`` or
``inception``), so numbers from different extractors never share a key. Mode counts always
come from the domain classifier. Every metric ``K`` is logged together with its sample count
under ``K/n``: the generated, reconstructed or real samples that it was computed on. Metrics
that compare two sample sets also log the count of real reference images under ``K/n_real``.

===================================== ==========================================================
key                                   meaning
===================================== ==========================================================
fid_<ext>                             FID of prior samples G(z), z ~ N(0, I), against real
                                      training images
kid_mean_<ext>, kid_std_<ext>         KID of the same pair (mean and std over random subsets)
is_mean_<ext>, is_std_<ext>           Inception Score of prior samples (mean and std over splits)
precision_<ext>, recall_<ext>         improved precision and recall (arXiv:1904.06991), k-NN
f_score_<ext>                         harmonic mean of precision and recall
fid_rec_<ext>                         FID of reconstructions G(E(x)) of held-out images against
                                      those images
kid_rec_mean_<ext>, kid_rec_std_<ext> KID of the same pair
modes                                 modes covered by prior samples (protocol in the
                                      ``eval_mode_protocol`` tag)
modes_kl                              KL(generated mode histogram || uniform), in nats
hq_share                              2-D data: share of samples within 3 std of the nearest centre
sharpness_rel                         variance of the Laplacian of prior samples / the same of
                                      real images
sharpness_rel_rec                     the same for reconstructions of held-out images
sample_var_rel                        total variance of samples in data space / the same of real
                                      data
feature_var_rel_domain                total variance of prior-sample domain features / the same
                                      of real features
collapse                              1.0 when the collapse rule fires, else 0.0 (the rule is in
                                      ``suite.metrics.diagnostics.collapse_reason``)
radius/<r>/fid_<ext>                  FID of G(r * sqrt(nz) * u) for fixed unit directions u
radius/<r>/sharpness_rel              sharpness of the same images, relative to real images
radius/<r>/modes                      modes covered by the same images or points
radius/<r>/hq_share                   2-D data: high-quality share of the same points
code_norm_rel_<s>_holdout             ||E(x)|| / sqrt(nz) over held-out x, s = mean, p10, p50, p90
recon_error_holdout                   mean squared error of G(E(x)) on held-out x ([-1, 1] pixel
                                      units for images, data units for points)
d_acc_real_holdout                    D's accuracy on held-out real data (logit > 0 is correct)
d_acc_fake_eval                       D's accuracy on this evaluation's prior samples (logit < 0)
d_acc_rec_holdout                     D's accuracy on reconstructions of held-out data (logit < 0)
domain_acc_holdout                    held-out accuracy of the domain classifier (constant for
                                      a data set)
===================================== ==========================================================

``<r>`` is the radius written with two decimals (``0.50``); ``<ext>`` is ``domain`` or
``inception``.
"""

from __future__ import annotations

COUNT_SUFFIX = "/n"
REAL_COUNT_SUFFIX = "/n_real"

EXTRACTOR_SHORT_NAMES = {"domain": "domain", "inception-v3-compat": "inception"}

FID = "fid"
KID_MEAN = "kid_mean"
KID_STD = "kid_std"
IS_MEAN = "is_mean"
IS_STD = "is_std"
PRECISION = "precision"
RECALL = "recall"
F_SCORE = "f_score"
FID_REC = "fid_rec"
KID_REC_MEAN = "kid_rec_mean"
KID_REC_STD = "kid_rec_std"
FEATURE_VAR_REL = "feature_var_rel"

MODES = "modes"
MODES_KL = "modes_kl"
HQ_SHARE = "hq_share"
SHARPNESS_REL = "sharpness_rel"
SHARPNESS_REL_REC = "sharpness_rel_rec"
SAMPLE_VAR_REL = "sample_var_rel"
COLLAPSE = "collapse"

CODE_NORM_REL = "code_norm_rel_{stat}_holdout"
CODE_NORM_STATS = ("mean", "p10", "p50", "p90")
RECON_ERROR = "recon_error_holdout"
D_ACC_REAL = "d_acc_real_holdout"
D_ACC_FAKE = "d_acc_fake_eval"
D_ACC_REC = "d_acc_rec_holdout"
DOMAIN_ACC = "domain_acc_holdout"

# Tags set by ``Evaluator.prepare`` and ``Evaluator.evaluate``
TAG_EXTRACTOR = "eval_extractor"
TAG_MODE_PROTOCOL = "eval_mode_protocol"
TAG_SAMPLE_RULES = "eval_sample_rules"
TAG_DOMAIN_CLASSIFIER = "eval_domain_classifier"
TAG_DOMAIN_ACC = "eval_domain_acc_holdout"
TAG_COLLAPSE_REASON = "eval_collapse_reason"
TAG_NONFINITE = "eval_nonfinite"

RADIUS_STRIP = "radius_strip"


def with_extractor(name: str, extractor: str) -> str:
    """Return ``name`` suffixed with the short name of ``extractor`` (``fid`` -> ``fid_domain``)."""
    return f"{name}_{EXTRACTOR_SHORT_NAMES[extractor]}"


def radius_key(radius: float, name: str) -> str:
    """Return the key of metric ``name`` at ``radius`` (``radius/0.50/fid_domain``)."""
    return f"radius/{radius:.2f}/{name}"


def code_norm_key(stat: str) -> str:
    """Return the key of one statistic of the held-out code norms (``code_norm_rel_p10_holdout``)."""
    return CODE_NORM_REL.format(stat=stat)


def count_key(key: str) -> str:
    """Return the key under which the sample count of metric ``key`` is logged."""
    return key + COUNT_SUFFIX


def real_count_key(key: str) -> str:
    """Return the key under which the real reference count of metric ``key`` is logged."""
    return key + REAL_COUNT_SUFFIX
