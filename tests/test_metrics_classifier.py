"""The domain classifier: its cache on disk, its extractor registration and its accuracy."""

import math
import time

import pytest
import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from suite.config import EvalConfig
from suite.metrics import cache, classifier, domain
from metrics_support import CPU, TEST_CLASSIFIER_EPOCHS, mnist, offline  # noqa: F401 (fixtures)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(cache.CACHE_ENV)
    assert cache.cache_dir() == cache.Path.home() / ".cache" / "aegan-suite"


def test_cached_classifier_reloads(mnist):
    first, spec = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    again, spec_again = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    assert again.from_cache
    assert again.accuracy == first.accuracy
    assert spec_again == spec
    assert first.path.suffix == ".safetensors"
    assert mnist.fingerprint in first.path.name
    assert not list(first.path.parent.glob("*.tmp"))
    for key, value in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "file.json"

    def failing(temp):
        with open(temp, "w") as handle:
            handle.write("{partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cache.atomic_write(target, failing)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    cache.write_json(target, {"a": 1})
    assert cache.read_json(target) == {"a": 1}


def test_extractor_layers_and_shapes(mnist):
    _, spec = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    assert FEATURE_EXTRACTORS_REGISTRY[domain.NAME] is domain.DomainFeatureExtractor
    assert FEATURE_EXTRACTORS_REGISTRY[domain.NAME_PER_CHANNEL] is domain.PerChannelDomainFeatureExtractor
    assert domain.DomainFeatureExtractor.get_default_feature_layer_for_metric("isc") == domain.LOGITS
    assert domain.DomainFeatureExtractor.get_default_feature_layer_for_metric("fid") == domain.FEATURES
    assert (spec.feature_dim, spec.num_classes) == (classifier.FEATURE_DIM, 10)

    extractor = domain.DomainFeatureExtractor(spec.name, [domain.LOGITS, domain.FEATURES],
                                              feature_extractor_weights_path=spec.weights_path)
    with torch.no_grad():
        logits, features = extractor(mnist.holdout[:8].repeat(1, 3, 1, 1))
    assert logits.shape == (8, 10)
    assert features.shape == (8, classifier.FEATURE_DIM)
    with pytest.raises(ValueError, match="uint8"):
        extractor(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="feature_extractor_weights_path"):
        domain.DomainFeatureExtractor(spec.name, [domain.LOGITS])


def test_classifier_accepts_larger_images(mnist):
    trained, _ = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    big = torch.nn.functional.interpolate(mnist.holdout.float(), scale_factor=2, mode="nearest").to(torch.uint8)
    held = classifier.Labelled(big, mnist.holdout_labels)
    assert classifier.accuracy(trained.model, held, CPU) == pytest.approx(trained.accuracy, abs=0.01)


def test_accuracy_of_empty_set_is_nan(mnist):
    trained, _ = domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    empty = classifier.Labelled(mnist.holdout[:0], mnist.holdout_labels[:0])
    assert math.isnan(classifier.accuracy(trained.model, empty, CPU))


def test_training_leaves_global_rng(mnist):
    state = torch.get_rng_state()
    few = classifier.Labelled(mnist.train[:256], mnist.train_labels[:256])
    classifier.train(few, 10, 1, CPU)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_default_classifier_accuracy_on_mnist5k(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    start = time.perf_counter()
    trained, _ = domain.obtain(mnist, EvalConfig().classifier_epochs, CPU)
    seconds = time.perf_counter() - start
    print(f"default domain classifier: held-out accuracy {trained.accuracy:.4f}, trained in {seconds:.1f} s")
    assert trained.accuracy >= 0.97
