"""torch-fidelity through suite.metrics.fidelity: kwargs, count rules and known values on mnist5k."""


import pytest
import torch
import torchvision.transforms.functional as TF
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

from suite.metrics import domain, fidelity
from metrics_support import CPU, TEST_CLASSIFIER_EPOCHS, mnist, offline  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def spec(mnist):
    return domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)[1]


def _settings(tmp_path, **changes):
    values = dict(kid_subset_size=1000, kid_subsets=10, isc_splits=10, prc_neighborhood=3, batch_size=250,
                  rng_seed=0, cache_root=str(tmp_path))
    values.update(changes)
    return fidelity.FidelitySettings(**values)


def _toy_spec(feature_dim=64, num_classes=10):
    return fidelity.ExtractorSpec("aegan-domain", "features", "logits", feature_dim, num_classes, "x", "id")


# ----------------------------------------------------------------------------------------------
# Keyword arguments


def test_kwargs_all_known_to_torch_fidelity(tmp_path):
    kwargs = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), CPU, {"fid", "kid", "isc", "prc"},
                                      500, 400, "real-cache")
    assert set(kwargs) <= set(DEFAULTS)


def test_kwargs_one_extractor_for_every_metric(tmp_path):
    kwargs = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), CPU, {"fid", "kid", "isc", "prc"},
                                      500, 400, "real-cache")
    assert kwargs["feature_extractor"] == "aegan-domain"
    assert kwargs["feature_layer_prc"] == kwargs["feature_layer_fid"] == kwargs["feature_layer_kid"] == "features"
    assert kwargs["feature_layer_isc"] == "logits"
    assert kwargs["feature_extractor_weights_path"] == "x"


def test_kwargs_device_workers_and_cache(tmp_path):
    kwargs = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), CPU, {"fid"}, 500, 400, "real-cache")
    assert kwargs["cuda"] is False
    assert kwargs["save_cpu_ram"] is True  # the only switch to 0 DataLoader workers in torch-fidelity 0.4.0
    assert kwargs["verbose"] is False
    assert kwargs["input2_cache_name"] == "real-cache"
    assert kwargs["cache_root"] == str(tmp_path)
    cuda = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), torch.device("cuda"), {"fid"}, 500, 400, None)
    assert cuda["cuda"] is True
    assert cuda["cache"] is False


def test_kwargs_misspelt_name_rejected():
    with pytest.raises(ValueError, match="feature_layer_prcc"):
        fidelity.checked_kwargs({"fid": True, "feature_layer_prcc": "features"})


def test_kwargs_unknown_metric_rejected(tmp_path):
    with pytest.raises(ValueError, match="ppl"):
        fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), CPU, {"fid", "ppl"}, 500, 400, None)


# ----------------------------------------------------------------------------------------------
# Sample-count rules


def test_kid_subset_adapts_to_counts(tmp_path):
    kwargs = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path), CPU, {"kid"}, 300, 250, None)
    assert kwargs["kid_subset_size"] == 250
    kwargs = fidelity.fidelity_kwargs(_toy_spec(), _settings(tmp_path, kid_subset_size=200), CPU, {"kid"},
                                      300, 250, None)
    assert kwargs["kid_subset_size"] == 200


def test_kid_too_few_samples_rejected():
    with pytest.raises(ValueError, match=r"at least 100 generated samples, got 99"):
        fidelity.kid_subset_size(1000, 99, 500, "eval.num_samples")


def test_fid_needs_more_samples_than_features():
    spec = _toy_spec(feature_dim=64)
    fidelity.check_fid_counts(spec, 65, 65, "eval.num_samples")
    with pytest.raises(ValueError, match=r"at least 65 generated samples, got 64; raise eval.num_samples"):
        fidelity.check_fid_counts(spec, 64, 500, "eval.num_samples")
    with pytest.raises(ValueError, match=r"at least 65 real samples, got 10"):
        fidelity.check_fid_counts(spec, 500, 10, "eval.num_samples")


def test_prc_needs_more_samples_than_k():
    fidelity.check_prc_counts(3, 4, 4, "eval.num_samples")
    with pytest.raises(ValueError, match=r"k=3 needs at least 4 generated samples, got 3"):
        fidelity.check_prc_counts(3, 3, 100, "eval.num_samples")


def test_isc_splits_follow_class_count():
    assert fidelity.isc_splits(_toy_spec(num_classes=10), 10, 2000, "s") == 10
    assert fidelity.isc_splits(_toy_spec(num_classes=10), 10, 55, "s") == 5
    assert fidelity.isc_splits(_toy_spec(num_classes=1000), 10, 500, "s") == 1


def test_image_metrics_reject_points(tmp_path, spec):
    points = torch.randn(500, 2)
    with pytest.raises(ValueError, match="2-D point data"):
        fidelity.compare(points, points, spec, _settings(tmp_path), CPU, {"fid"}, None)


# ----------------------------------------------------------------------------------------------
# Known values with the domain extractor


def test_fid_orders_real_blurred_noise(tmp_path, mnist, spec):
    real_a, real_b = mnist.train[:500], mnist.train[500:1000]
    blurred = TF.gaussian_blur(real_a, [5, 5], [1.5, 1.5])
    noise = torch.randint(0, 256, real_a.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    settings = _settings(tmp_path)

    def fid(images):
        return fidelity.compare(images, real_b, spec, settings, CPU, {"fid"}, None)["fid"]

    fid_real, fid_blurred, fid_noise = fid(real_a), fid(blurred), fid(noise)
    assert fid_real < fid_blurred < fid_noise
    assert fid_real < 0.05 * fid_noise


def test_inception_score_of_real_data_near_class_count(tmp_path, mnist, spec):
    scores = fidelity.compare(mnist.train[:2000], mnist.holdout, spec, _settings(tmp_path), CPU, {"isc"}, None)
    assert 8.0 < scores["is_mean"] <= 10.0


def test_collapsed_generator_has_low_recall(tmp_path, mnist, spec, monkeypatch):
    def no_vgg(*args, **kwargs):
        raise AssertionError("precision/recall must not load VGG16")

    monkeypatch.setattr(FeatureExtractorVGG16, "__init__", no_vgg)
    real = mnist.holdout
    collapsed = mnist.train[:1].repeat(len(real), 1, 1, 1)
    settings = _settings(tmp_path)

    scores = fidelity.compare(collapsed, real, spec, settings, CPU, {"prc"}, None)
    assert scores["recall"] < 0.01
    diverse = fidelity.compare(mnist.train[:500], real, spec, settings, CPU, {"prc"}, None)
    assert diverse["recall"] > 0.5
    assert diverse["precision"] > 0.5


def test_kid_and_fid_of_same_data_near_zero(tmp_path, mnist, spec):
    settings = _settings(tmp_path)
    same = fidelity.compare(mnist.train[:500], mnist.train[:500], spec, settings, CPU, {"fid", "kid"}, None)
    blurred = TF.gaussian_blur(mnist.train[:500], [5, 5], [1.5, 1.5])
    other = fidelity.compare(blurred, mnist.train[:500], spec, settings, CPU, {"kid"}, None)
    assert abs(same["fid"]) < 1e-3
    assert abs(same["kid_mean"]) < 0.05 * other["kid_mean"]


def test_gray_and_rgb_inputs_give_same_fid(tmp_path, mnist, spec):
    settings = _settings(tmp_path)
    gray = fidelity.compare(mnist.train[:200], mnist.holdout, spec, settings, CPU, {"fid"}, None)["fid"]
    rgb = fidelity.compare(mnist.train[:200].repeat(1, 3, 1, 1), mnist.holdout, spec, settings, CPU, {"fid"},
                           None)["fid"]
    assert rgb == pytest.approx(gray, rel=1e-6)

