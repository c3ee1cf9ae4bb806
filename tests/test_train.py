"""The trainer end to end on tiny real data, tracked in a real MLflow SQLite store."""

import pytest
import torch

from suite import checkpoint, config, objectives, tracking, train

TINY = [
    "data.limit=320", "data.holdout=0.2", "model.nz=8", "model.ngf=8", "model.ndf=8", "model.nef=8",
    "train.batch_size=32", "train.log_every=4", "eval.enabled=false", "eval.grid_size=16",
]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def store(store_dir, tmp_path, monkeypatch):
    """Run in a fresh folder; one MLflow SQLite store per module, since creating one takes seconds."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{store_dir / 'mlflow.db'}"


def _cfg(*extra):
    return config.load(overrides=TINY + list(extra))


def _params(result):
    state = checkpoint.load(result.out_dir / train.CHECKPOINT_NAME)
    return state["models"]


@pytest.mark.parametrize("objective", ["dcgan", "aegan", "vaegan"])
def test_objective_one_epoch_tracked(objective, store):
    cfg = _cfg(f"objective={objective}", "epochs=1", "ae_to_d=true")
    result = train.train(cfg, tracking_uri=store, progress=False)

    run = tracking.read_run(result.run_id, store)
    assert run["status"] == "FINISHED"
    assert run["params"]["method.objective"] == objective
    assert run["params"]["optim.betas"] == "0.5,0.999"
    assert run["tags"]["seed"] == "0"
    assert len(run["tags"]["data_fingerprint"]) >= 8
    for key in ("loss_D_real", "loss_D_fake", "loss_G_adv", "d_acc_real", "d_acc_fake", "images_per_second"):
        assert key in run["metrics"], key
    assert ("loss_rec" in run["metrics"]) == (objective != "dcgan")
    assert ("loss_zpen" in run["metrics"]) == (objective == "aegan")
    assert ("loss_kl" in run["metrics"]) == (objective == "vaegan")
    assert ("code_norm_rel_p50" in run["metrics"]) == (objective != "dcgan")
    assert ("d_acc_rec" in run["metrics"]) == (objective != "dcgan")
    assert tracking.metric_history(result.run_id, "step/loss_D_real", store)[0][0] == 4

    artifacts = tracking.list_artifacts(result.run_id, uri=store)
    assert "samples/epoch_0001.png" in artifacts
    assert ("reconstructions/epoch_0001.png" in artifacts) == (objective != "dcgan")
    assert "checkpoint/model.safetensors" in artifacts
    assert "checkpoint/config.json" in artifacts
    assert "metrics.json" in artifacts


def test_code_norm_relative_to_sqrt_nz(store):
    result = train.train(_cfg("epochs=1"), tracking_uri=store, progress=False)
    metrics = tracking.read_run(result.run_id, store)["metrics"]
    assert metrics["code_norm_rel_mean"] == pytest.approx(metrics["code_norm_mean"] / 8**0.5)
    assert metrics["code_norm_p10"] <= metrics["code_norm_p50"] <= metrics["code_norm_p90"]


def test_same_seed_identical_runs(store):
    first = train.train(_cfg("epochs=1", "run_name=a"), tracking_uri=store, progress=False)
    second = train.train(_cfg("epochs=1", "run_name=b"), tracking_uri=store, progress=False)
    for key in ("step/loss_D_real", "step/loss_G_adv", "step/loss_rec"):
        assert tracking.metric_history(first.run_id, key, store) == tracking.metric_history(second.run_id, key, store)
    for net, state in _params(first).items():
        for name, value in state.items():
            assert torch.equal(value, _params(second)[net][name]), f"{net}.{name}"


def test_other_seed_differs(store):
    first = train.train(_cfg("epochs=1", "seed=0"), tracking_uri=store, progress=False)
    second = train.train(_cfg("epochs=1", "seed=1"), tracking_uri=store, progress=False)
    assert not torch.equal(_params(first)["G"]["net.0.weight"], _params(second)["G"]["net.0.weight"])


def test_resume_is_bit_identical(store):
    straight = train.train(_cfg("epochs=2", "run_name=straight", "objective=vaegan"), tracking_uri=store, progress=False)

    cfg = _cfg("epochs=2", "run_name=split", "objective=vaegan")

    def interrupt(epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, tracking_uri=store, progress=False, on_evaluation=interrupt)
    interrupted_id = checkpoint.load(train.run_dir(cfg) / train.CHECKPOINT_NAME)["run_id"]
    assert tracking.read_run(interrupted_id, store)["status"] == "KILLED"
    resumed = train.train(cfg, resume=True, tracking_uri=store, progress=False)

    assert resumed.epochs == 2
    for net, state in _params(straight).items():
        for name, value in state.items():
            assert torch.equal(value, _params(resumed)[net][name]), f"{net}.{name}"
    for key in ("loss_D_real", "loss_G_adv", "loss_rec", "loss_kl", "step/loss_D_fake"):
        assert tracking.metric_history(straight.run_id, key, store) == tracking.metric_history(resumed.run_id, key, store)
    assert tracking.read_run(resumed.run_id, store)["status"] == "FINISHED"


def test_resume_with_changed_config_refused(store):
    cfg = _cfg("epochs=1", "run_name=r")
    train.train(cfg, tracking_uri=store, progress=False)
    changed = config.apply(cfg, {"method.z_penalty": 0.5})
    with pytest.raises(train.ResumeError) as caught:
        train.train(changed, resume=True, tracking_uri=store, progress=False)
    assert "method.z_penalty: 0.01 -> 0.5" in str(caught.value)


def test_resume_with_changed_default_name_names_the_change(store):
    """A default run name hashes the config, so the changed run has no checkpoint of its own."""
    cfg = _cfg("epochs=1")
    first = train.train(cfg, tracking_uri=store, progress=False)
    changed = config.apply(cfg, {"method.z_penalty": 0.5})
    with pytest.raises(train.ResumeError) as caught:
        train.train(changed, resume=True, tracking_uri=store, progress=False)
    message = str(caught.value)
    assert f"closest stored run, {first.out_dir / train.CHECKPOINT_NAME}" in message
    assert "method.z_penalty: 0.01 -> 0.5" in message
    assert message.count(" -> ") == 1  # the only changed value


def test_resume_without_checkpoint_refused(store):
    with pytest.raises(train.ResumeError, match="no checkpoint"):
        train.train(_cfg("epochs=1"), resume=True, tracking_uri=store, progress=False)


def test_existing_checkpoint_not_overwritten(store):
    cfg = _cfg("epochs=1", "run_name=twice")
    train.train(cfg, tracking_uri=store, progress=False)
    with pytest.raises(train.ResumeError, match="--resume"):
        train.train(cfg, tracking_uri=store, progress=False)


def test_nonfinite_loss_stops_run(store, monkeypatch):
    real_step = objectives.Trainer.step
    calls = {"n": 0}

    def poisoned(self, x, z):
        stats = real_step(self, x, z)
        calls["n"] += 1
        if calls["n"] == 11:  # step 3 of epoch 2 (8 steps per epoch)
            stats["loss_G_adv"] = torch.tensor(float("nan"))
        return stats

    monkeypatch.setattr(objectives.Trainer, "step", poisoned)
    cfg = _cfg("epochs=3", "run_name=nan")
    with pytest.raises(train.Diverged) as caught:
        train.train(cfg, tracking_uri=store, progress=False)
    assert "epoch 2" in str(caught.value)
    assert "step 11" in str(caught.value)
    assert "loss_G_adv" in str(caught.value)

    state = checkpoint.load(train.run_dir(cfg) / train.CHECKPOINT_NAME)
    assert state["epoch"] == 1
    run = tracking.read_run(state["run_id"], store)
    assert run["status"] == "FAILED"
    assert run["tags"]["failure"] == "diverged"


def test_ring8_points_train(store):
    cfg = config.load(overrides=["data=ring8", "data.points=512", "model.nz=4", "model.ngf=16", "model.ndf=16",
                                 "model.nef=16", "train.batch_size=64", "epochs=1", "eval.enabled=false"])
    result = train.train(cfg, tracking_uri=store, progress=False)
    assert "samples/epoch_0001.png" in tracking.list_artifacts(result.run_id, uri=store)


def test_pickled_checkpoint_rejected(tmp_path):
    import pickle

    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("side effect",))

    with open(path, "wb") as handle:
        pickle.dump({"format": 1, "x": Payload()}, handle)
    with pytest.raises(checkpoint.CheckpointError, match="rejected"):
        checkpoint.load(path)
