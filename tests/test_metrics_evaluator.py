"""The Evaluator end to end on mnist5k, ring8 and stacked-mnist with untrained and hand-built nets."""

import copy
import dataclasses
import hashlib
import math
import shutil

import pytest
import torch
from torch import nn

from suite import config, data, models
from suite.metrics import Evaluator, InceptionWeightsError, cache, classifier, diagnostics, domain, inception, keys
from metrics_support import CPU, TEST_CLASSIFIER_EPOCHS, mnist, offline  # noqa: F401 (fixtures)

RADII = (0.0, 0.5, 1.0)
SMALL_EVAL = [
    "model.nz=16", "model.ngf=8", "model.ndf=8", "model.nef=8", "eval.num_samples=300",
    "eval.radius_samples=200", "eval.kid_subsets=10", "eval.batch_size=300",
    f"eval.classifier_epochs={TEST_CLASSIFIER_EPOCHS}",
]


def _cfg(*overrides, radii=RADII):
    cfg = config.load(overrides=SMALL_EVAL + list(overrides))
    cfg.eval.radii = radii
    return cfg


def _nets(cfg, dataset):
    torch.manual_seed(0)
    return models.build(cfg, dataset.channels, dataset.kind == "points")


@pytest.fixture(scope="module")
def prepared(mnist):
    cfg = _cfg()
    evaluator = Evaluator(cfg, mnist, CPU)
    tags = evaluator.prepare()
    return cfg, evaluator, tags


@pytest.fixture(scope="module")
def evaluated(prepared, mnist):
    """One evaluation of untrained aegan networks in eval mode."""
    cfg, evaluator, _ = prepared
    nets = _nets(cfg, mnist)
    nets.train(False)
    return evaluator.evaluate(nets, epoch=1, final=False)


@pytest.fixture(scope="module")
def from_train_mode(prepared, mnist):
    """The same networks evaluated from train mode (D left in eval mode), with state before and after."""
    cfg, evaluator, _ = prepared
    nets = _nets(cfg, mnist)
    nets.train(True)
    nets.D.eval()
    before = {name: {k: v.clone() for k, v in module.state_dict().items()} for name, module in nets.modules().items()}
    rng = torch.get_rng_state()
    result = evaluator.evaluate(nets, epoch=2, final=True)
    return nets, before, rng, torch.get_rng_state(), result


# ----------------------------------------------------------------------------------------------
# Image data


def test_prepare_tags(prepared):
    _, _, tags = prepared
    assert tags[keys.TAG_EXTRACTOR] == "domain"
    assert float(tags[keys.TAG_DOMAIN_ACC]) > 0.9
    assert tags[keys.TAG_MODE_PROTOCOL].startswith("classifier-share")
    assert "FID needs > 64" in tags[keys.TAG_SAMPLE_RULES]


def test_aegan_metrics_and_counts(evaluated):
    m = evaluated.metrics
    for name in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "f_score",
                 "fid_rec", "kid_rec_mean", "kid_rec_std", "feature_var_rel"):
        assert keys.with_extractor(name, "domain") in m, name
    for key in (keys.MODES, keys.MODES_KL, keys.SHARPNESS_REL, keys.SHARPNESS_REL_REC, keys.SAMPLE_VAR_REL,
                keys.COLLAPSE, keys.RECON_ERROR, keys.D_ACC_REAL, keys.D_ACC_FAKE, keys.D_ACC_REC,
                keys.DOMAIN_ACC, *(keys.code_norm_key(s) for s in keys.CODE_NORM_STATS)):
        assert key in m, key
    values = [k for k in m if not k.endswith((keys.COUNT_SUFFIX, keys.REAL_COUNT_SUFFIX))]
    for key in values:
        assert keys.count_key(key) in m, f"{key} has no sample count"
    assert m["fid_domain/n"] == 300
    assert m["fid_domain/n_real"] == 300
    assert m["fid_rec_domain/n"] == 300
    assert m[keys.D_ACC_REAL + "/n"] == 300
    assert 0 <= m["precision_domain"] <= 1
    assert 0 <= m[keys.MODES] <= 10
    assert m[keys.code_norm_key("p10")] <= m[keys.code_norm_key("p50")] <= m[keys.code_norm_key("p90")]


def test_radius_sweep_every_radius(evaluated):
    for r in RADII:
        for name in ("fid_domain", keys.SHARPNESS_REL, keys.MODES):
            key = keys.radius_key(r, name)
            assert math.isfinite(evaluated.metrics[key]), key
            assert evaluated.metrics[keys.count_key(key)] == 200
    strip = evaluated.images[keys.RADIUS_STRIP]
    assert strip.dtype == torch.uint8
    assert tuple(strip.shape) == (1, 4 * 34 + 2, len(RADII) * 34 + 2)


def test_untrained_generator_flagged_collapsed(evaluated):
    # DCGAN's N(0, 0.02) initialisation makes G's output almost the same image for every z
    assert evaluated.metrics["feature_var_rel_domain"] < 0.05
    assert evaluated.metrics[keys.COLLAPSE] == 1.0
    assert "feature_var_rel_domain" in evaluated.tags[keys.TAG_COLLAPSE_REASON]


def test_collapse_rule_cases():
    assert diagnostics.collapse_reason(0.5, "v", 10, 10, 0.05, 0.5) == ""
    assert diagnostics.collapse_reason(0.5, "v", 9, None, 0.05, 0.5) == ""
    assert "v 0.01 < 0.05" in diagnostics.collapse_reason(0.01, "v", 10, 10, 0.05, 0.5)
    assert "modes fell from 10 to 4" in diagnostics.collapse_reason(0.5, "v", 4, 10, 0.05, 0.5)
    assert diagnostics.collapse_reason(0.5, "v", 5, 10, 0.05, 0.5) == ""
    assert diagnostics.collapse_reason(float("nan"), "v", None, None, 0.05, 0.5) == ""


def test_evaluate_leaves_rng_and_networks(from_train_mode):
    nets, before, rng_before, rng_after, _ = from_train_mode
    assert torch.equal(rng_after, rng_before)
    for name, module in nets.modules().items():
        after = module.state_dict()
        for key, value in before[name].items():
            assert torch.equal(after[key], value), f"{name}.{key} changed"
    assert nets.G.training
    assert nets.E.training
    assert not nets.D.training


def test_same_networks_same_numbers(evaluated, from_train_mode):
    again = from_train_mode[-1].metrics
    for key in ("fid_domain", "kid_mean_domain", keys.MODES, keys.radius_key(0.5, "fid_domain"), keys.RECON_ERROR):
        assert again[key] == evaluated.metrics[key], key


def test_d_accuracy_uses_batch_statistics():
    """D judges with each batch's own statistics, as in training, not with its running statistics."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    D[1].running_mean.fill_(50.0)  # running statistics far from any batch: eval mode would judge differently
    D.eval()
    x = torch.randn(64, 2)
    buffers = {name: b.clone() for name, b in D.named_buffers()}

    accuracy, judged = diagnostics.d_accuracy(D, x, True, pac=1, batch_size=32, device=CPU)

    reference = copy.deepcopy(D).train()
    with torch.no_grad():
        expected = torch.cat([reference(chunk).flatten() for chunk in x.split(32)]) > 0
    with torch.no_grad():
        in_eval_mode = (D(x).flatten() > 0).double().mean().item()
    assert (accuracy, judged) == (expected.double().mean().item(), 64)
    assert accuracy != in_eval_mode  # the case the running statistics get wrong
    assert not D.training
    assert all(torch.equal(b, buffers[name]) for name, b in D.named_buffers())


def test_dcgan_skips_encoder_keeps_sweep(mnist):
    cfg = _cfg("objective=dcgan", radii=(1.0,))
    evaluator = Evaluator(cfg, mnist, CPU)
    evaluator.prepare()
    m = evaluator.evaluate(_nets(cfg, mnist), epoch=1, final=False).metrics
    for key in ("fid_rec_domain", keys.RECON_ERROR, keys.D_ACC_REC, keys.code_norm_key("mean")):
        assert key not in m, key
    assert keys.D_ACC_REAL in m
    assert keys.radius_key(1.0, "fid_domain") in m


def _real_hashes(*sets):
    return {hashlib.sha1(image[0].contiguous().numpy().tobytes()).hexdigest() for s in sets for image in s}


def test_real_features_extracted_once(mnist, tmp_path, monkeypatch):
    # A fresh cache folder that holds only the session's trained classifier
    source = classifier.cache_path(mnist.fingerprint, 1, 10, TEST_CLASSIFIER_EPOCHS)
    domain.obtain(mnist, TEST_CLASSIFIER_EPOCHS, CPU)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    target = classifier.cache_path(mnist.fingerprint, 1, 10, TEST_CLASSIFIER_EPOCHS)
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)

    cfg = _cfg(radii=(0.0,))
    counted = {"real": 0, "other": 0}
    evaluator = Evaluator(cfg, mnist, CPU)
    real = _real_hashes(evaluator.real_prior, evaluator.real_holdout)
    forward = domain.DomainFeatureExtractor.forward

    def counting_forward(self, x):
        for image in x:
            digest = hashlib.sha1(image[0].contiguous().numpy().tobytes()).hexdigest()
            counted["real" if digest in real else "other"] += 1
        return forward(self, x)

    monkeypatch.setattr(domain.DomainFeatureExtractor, "forward", counting_forward)
    evaluator.prepare()
    assert counted["real"] >= 600  # 300 training and 300 held-out reference images, extracted in prepare

    counted.update(real=0, other=0)
    nets = _nets(cfg, mnist)
    evaluator.evaluate(nets, epoch=1, final=False)
    assert counted["real"] == 0
    assert counted["other"] > 0

    counted.update(real=0, other=0)
    again = Evaluator(cfg, mnist, CPU)
    again.prepare()
    again.evaluate(nets, epoch=2, final=False)
    assert counted["real"] == 0
    assert counted["other"] > 0


def test_too_few_samples_rejected_before_training(mnist):
    evaluator = Evaluator(_cfg("eval.num_samples=50"), mnist, CPU)
    with pytest.raises(ValueError, match=r"at least 65 generated samples, got 50; raise eval.num_samples"):
        evaluator.prepare()


def test_too_small_holdout_rejected_before_classifier(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))  # an empty cache: a classifier would train here
    small = dataclasses.replace(mnist, holdout=mnist.holdout[:40], holdout_labels=mnist.holdout_labels[:40])
    with pytest.raises(ValueError, match=r"needs at least 65 generated samples, got 40; the held-out split has "
                                         r"only 40 images: raise data.holdout"):
        Evaluator(_cfg(), small, CPU).prepare()
    assert list(tmp_path.iterdir()) == []


def test_data_smaller_than_sample_count_rejected_before_classifier(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    small = dataclasses.replace(mnist, train=mnist.train[:60], train_labels=mnist.train_labels[:60])
    with pytest.raises(ValueError, match=r"needs at least 65 real samples, got 60; the training split has only 60 "
                                         r"images: use more data \(raise data.limit or lower data.holdout\)"):
        Evaluator(_cfg("eval.num_samples=500"), small, CPU).prepare()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Feature extractor choice and Inception weights


def _unlabelled(dataset):
    return dataclasses.replace(dataset, train_labels=None, holdout_labels=None, num_modes=0)


def test_unlabelled_images_need_inception_weights(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    evaluator = Evaluator(_cfg(), _unlabelled(mnist), CPU)
    assert evaluator.extractor == inception.NAME
    with pytest.raises(InceptionWeightsError) as error:
        evaluator.prepare()
    message = str(error.value)
    assert inception.FILE_NAME in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "eval.inception_weights = PATH" in message
    assert "--inception-weights PATH" in message


def test_truncated_inception_download_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = inception.hub_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x02 not the whole file")
    with pytest.raises(InceptionWeightsError, match="truncated or corrupt"):
        inception.resolve("", allow_download=False)


def test_unreadable_local_inception_file_rejected(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(InceptionWeightsError, match=r"could not be loaded .*--inception-weights PATH"):
        inception.resolve(str(path), allow_download=False)
    with pytest.raises(InceptionWeightsError, match="not found at"):
        inception.resolve(str(tmp_path / "missing.pth"), allow_download=False)


def test_domain_extractor_needs_labels(mnist):
    evaluator = Evaluator(_cfg("eval.extractor=domain"), _unlabelled(mnist), CPU)
    with pytest.raises(ValueError, match="needs labelled image data"):
        evaluator.prepare()


# ----------------------------------------------------------------------------------------------
# 2-D points


class CentreGenerator(nn.Module):
    """Puts each code exactly on one of the first ``modes`` ring8 centres, chosen by its angle."""

    def __init__(self, centers: torch.Tensor, modes: int):
        super().__init__()
        self.register_buffer("centers", centers)
        self.modes = modes

    def forward(self, z):
        angle = torch.atan2(z[:, 1], z[:, 0]) + math.pi
        index = (angle / (2 * math.pi) * self.modes).long().clamp(max=self.modes - 1)
        return self.centers[index]


@pytest.fixture(scope="module")
def ring8(offline):
    return data.load(config.DataConfig(source="ring8", points=3000))


def test_points_get_point_metrics_only(ring8):
    cfg = _cfg("data=ring8", "data.points=3000", "eval.point_samples=500")
    evaluator = Evaluator(cfg, ring8, CPU)
    tags = evaluator.prepare()
    assert tags[keys.TAG_MODE_PROTOCOL].startswith("points (PacGAN)")
    result = evaluator.evaluate(_nets(cfg, ring8), epoch=1, final=False)
    m = result.metrics
    assert {keys.MODES, keys.MODES_KL, keys.HQ_SHARE, keys.RECON_ERROR, keys.D_ACC_REC} <= set(m)
    assert keys.radius_key(0.5, keys.HQ_SHARE) in m
    assert not any("fid" in k or "sharpness" in k for k in m)
    assert result.images == {}


def test_points_known_modes_and_collapse(ring8):
    cfg = _cfg("data=ring8", "data.points=3000", "eval.point_samples=800")
    evaluator = Evaluator(cfg, ring8, CPU)
    evaluator.prepare()
    nets = _nets(cfg, ring8)

    nets.G = CentreGenerator(ring8.centers, 8)
    m = evaluator.evaluate(nets, epoch=1, final=False).metrics
    assert m[keys.MODES] == 8
    assert m[keys.HQ_SHARE] == 1.0
    assert m[keys.MODES_KL] < 0.02
    assert m[keys.COLLAPSE] == 0.0

    nets.G = CentreGenerator(ring8.centers, 2)
    result = evaluator.evaluate(nets, epoch=2, final=False)
    assert result.metrics[keys.MODES] == 2
    assert result.metrics[keys.MODES_KL] == pytest.approx(math.log(4), abs=0.01)
    assert result.metrics[keys.COLLAPSE] == 1.0
    assert "modes fell from 8 to 2" in result.tags[keys.TAG_COLLAPSE_REASON]


# ----------------------------------------------------------------------------------------------
# stacked-mnist


def test_stacked_mnist_protocol(offline):
    cfg = _cfg("data=stacked-mnist", "data.limit=3000", "eval.num_samples=400", "eval.radius_samples=1000",
               "eval.stacked_mode_samples=2000", radii=(0.0, 1.0))
    stacked = data.load(cfg.data)
    evaluator = Evaluator(cfg, stacked, CPU)
    tags = evaluator.prepare()
    assert tags[keys.TAG_MODE_PROTOCOL].startswith("stacked-mnist (VEEGAN/PacGAN)")
    m = evaluator.evaluate(_nets(cfg, stacked), epoch=1, final=False).metrics
    assert m[keys.count_key(keys.MODES)] == 2000
    assert 1 <= m[keys.MODES] <= 1000
    assert m["fid_domain/n"] == 400
    assert m[keys.radius_key(1.0, keys.MODES) + "/n"] == 1000
