"""Mode coverage: hand-computed histograms and KL, hand-placed points, real mnist5k digits."""

import math

import pytest
import torch

from suite.config import EvalConfig
from suite.metrics import domain, modes
from metrics_support import CPU, TEST_CLASSIFIER_EPOCHS, mnist, offline  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def labeller(mnist):
    spec = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)[1]
    return domain.DomainFeatureExtractor(spec.name, [domain.LOGITS], feature_extractor_weights_path=spec.weights_path)


def _labels(labeller, images):
    with torch.no_grad():
        (logits,) = labeller(images.repeat(1, 3, 1, 1))
    return logits.argmax(1)


# ----------------------------------------------------------------------------------------------
# Histograms and KL


def test_kl_to_uniform_by_hand():
    counts = torch.tensor([2, 1, 1, 0])
    expected = 0.5 * math.log(0.5 * 4) + 0.25 * math.log(0.25 * 4) * 2
    assert modes.kl_to_uniform(counts) == pytest.approx(expected)
    assert modes.kl_to_uniform(torch.tensor([5, 5, 5])) == pytest.approx(0.0)
    assert modes.kl_to_uniform(torch.tensor([0, 7, 0, 0, 0])) == pytest.approx(math.log(5))
    assert math.isnan(modes.kl_to_uniform(torch.zeros(3, dtype=torch.long)))


def test_histogram_rejects_labels_out_of_range():
    assert modes.histogram(torch.tensor([0, 2, 2]), 3).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="0..2"):
        modes.histogram(torch.tensor([0, 3]), 3)


def test_min_count_threshold():
    assert modes.min_count(2000, 10, 0.1) == 20
    assert modes.min_count(26000, 1000, 0.1) == 3
    assert modes.min_count(5, 10, 0.1) == 1


def test_label_coverage_threshold():
    labels = torch.tensor([0] * 20 + [1] * 19 + [2] * 1)
    assert modes.label_coverage(labels, 10, threshold=20).modes == 1
    assert modes.label_coverage(labels, 10, threshold=1).modes == 3
    assert modes.label_coverage(labels, 10, threshold=1).count == 40


def test_check_count_names_minimum():
    modes.check_count(1000, 1000, "eval.radius_samples")
    with pytest.raises(ValueError, match=r"at least 1000 samples, got 500; raise eval.radius_samples"):
        modes.check_count(500, 1000, "eval.radius_samples")


# ----------------------------------------------------------------------------------------------
# 2-D points


def test_point_coverage_hand_placed():
    centers = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    std = 0.1
    points = torch.tensor([
        [0.0, 0.0], [0.05, -0.05],  # mode 0, both within 3 std
        [2.0, 0.29],                # mode 1, within 0.3
        [0.0, 1.6],                 # nearest mode 2 but 0.4 away: not high quality
        [1.0, 1.0],                 # far from every centre
    ])
    found = modes.point_coverage(points, centers, std)
    assert found.modes == 2
    assert found.hq_share == pytest.approx(3 / 5)
    p = torch.tensor([2 / 3, 1 / 3])
    assert found.kl == pytest.approx(float((p * (p * 4).log()).sum()))
    assert found.count == 5


def test_point_coverage_none_high_quality():
    found = modes.point_coverage(torch.tensor([[5.0, 5.0]]), torch.zeros(1, 2), 0.1)
    assert found.modes == 0
    assert found.hq_share == 0.0
    assert math.isnan(found.kl)


def test_point_coverage_rejects_images():
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        modes.point_coverage(torch.zeros(4, 1, 32, 32), torch.zeros(8, 2), 0.01)


# ----------------------------------------------------------------------------------------------
# Real digits through the domain classifier


def test_real_digits_cover_every_class(mnist, labeller):
    labels = _labels(labeller, mnist.holdout)
    threshold = modes.min_count(len(labels), 10, EvalConfig().mode_min_share)
    found = modes.label_coverage(labels, 10, threshold)
    assert found.modes == 10
    assert found.kl < 0.05


def test_single_class_covers_one_mode(mnist, labeller):
    threes = mnist.train[mnist.train_labels == 3][:300]
    labels = _labels(labeller, threes)
    found = modes.label_coverage(labels, 10, modes.min_count(len(labels), 10, EvalConfig().mode_min_share))
    assert found.modes == 1
    assert found.kl > 0.8 * math.log(10)


def test_per_channel_labels_match_stacked_mode(mnist):
    spec = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)[1]
    extractor = domain.PerChannelDomainFeatureExtractor(domain.NAME_PER_CHANNEL, [domain.FEATURES, domain.LOGITS],
                                                        feature_extractor_weights_path=spec.weights_path)
    digits, digit_labels = mnist.holdout[:300, 0], mnist.holdout_labels[:300]
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    picks = torch.stack([torch.arange(300), order, order.flip(0)], dim=1)
    stacked = digits[picks]  # (300, 3, 32, 32): three digits as three channels
    expected = digit_labels[picks[:, 0]] * 100 + digit_labels[picks[:, 1]] * 10 + digit_labels[picks[:, 2]]

    with torch.no_grad():
        features, logits = extractor(stacked)
    assert features.shape == (300, 192)
    assert logits.shape == (300, 1000)
    assert torch.allclose(logits.exp().sum(1), torch.ones(300), atol=1e-4)
    assert (logits.argmax(1) == expected).double().mean() > 0.85


def test_describe_names_protocol():
    assert "counts with >= 20 samples" in modes.describe("classifier-share", 2000, 10, 0.1)
    assert "counts with >= 1 sample" in modes.describe("stacked-mnist", 26000, 1000, 0.1)
    assert "within 3 std" in modes.describe("points", 2500, 8, 0.1)
    with pytest.raises(ValueError):
        modes.describe("other", 1, 1, 0.1)
