"""Config loading, overrides, flattening and every rejected value."""

import subprocess
import sys

import pytest

from suite import config


def test_defaults_validate():
    cfg = config.load()
    assert cfg.method.objective == "aegan"
    assert cfg.optim.lr_G == 2e-4
    assert cfg.optim.betas == (0.5, 0.999)


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('data = "ring8"\n[method]\nobjective = "vaegan"\nkl_weight = 0.5\n[optim]\nbetas = [0.0, 0.9]\n')
    cfg = config.load(path, ["method.kl_weight=2", "nz=16", "data=mnist5k", "ae_to_d=true"])
    assert cfg.method.objective == "vaegan"
    assert cfg.method.kl_weight == 2.0
    assert isinstance(cfg.method.kl_weight, float)
    assert cfg.model.nz == 16
    assert cfg.data.source == "mnist5k"
    assert cfg.method.ae_to_d is True
    assert cfg.optim.betas == (0.0, 0.9)


def test_flatten_round_trip():
    cfg = config.load(overrides=["z_penalty=0.5", "seed=3"])
    flat = config.flatten(cfg)
    assert flat["method.z_penalty"] == 0.5
    assert flat["optim.betas"] == [0.5, 0.999]
    assert config.from_flat(flat) == cfg
    assert len(flat) == len(config.leaf_fields())


def test_diff_lists_changes():
    a = config.flatten(config.load())
    b = config.flatten(config.load(overrides=["nz=7"]))
    assert config.diff(a, b) == ["model.nz: 100 -> 7"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("nonsense=1", "nonsense"),
        ("z_penalti=1", "z_penalti"),
        ("nz=abc", "model.nz"),
        ("nz=1.5", "model.nz"),
        ("ae_to_d=1", "method.ae_to_d"),
        ("z_penalty=-1", "method.z_penalty"),
        ("recon_weight=-0.1", "method.recon_weight"),
        ("kl_weight=-2", "method.kl_weight"),
        ("z_floor=-1", "method.z_floor"),
        ("lr_G=0", "optim.lr_G"),
        ("objective=wgan", "method.objective"),
        ("data=mnist6k", "mnist6k"),
        ("image_size=48", "data.image_size"),
        ("nz=0", "model.nz"),
        ("batch_size=100000", "train.batch_size"),
        ("batch_size=0", "train.batch_size"),
        ("recon_loss=l3", "method.recon_loss"),
        ("device=tpu", "train.device"),
        ("betas=[0.5]", "optim.betas"),
        ("betas=[0.5, 1.5]", "optim.betas"),
        ("channels=2", "data.channels"),
        ("epochs=0", "train.epochs"),
        ("pac=0", "model.pac"),
    ],
)
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(config.ConfigError) as caught:
        config.load(overrides=[override])
    assert key in str(caught.value)


def test_unknown_key_suggests_close_match():
    with pytest.raises(config.ConfigError, match="did you mean.*z_penalty"):
        config.load(overrides=["z_penalti=1"])


def test_wrong_type_names_expected_type():
    with pytest.raises(config.ConfigError, match="expected int"):
        config.load(overrides=["nz=abc"])


def test_batch_size_message_names_data_size():
    with pytest.raises(config.ConfigError, match="4500 training examples"):
        config.load(overrides=["batch_size=5000"])


def test_unknown_key_in_toml_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[method]\nz_penalty = 1\nlambda = 2\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert "bad.toml" in str(caught.value)
    assert "method.lambda" in str(caught.value)


def test_toml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[method]\nz_penalty = 1\nobjective = "aegan\n')
    with pytest.raises(config.ConfigError, match="line 3"):
        config.load(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_bad_override_syntax():
    with pytest.raises(config.ConfigError, match="key=value"):
        config.load(overrides=["z_penalty"])


def test_ignored_settings_named():
    cfg = config.load(overrides=["objective=dcgan", "z_penalty=3"])
    assert config.ignored_settings(cfg) == ["method.z_penalty"]
    cfg = config.load(overrides=["objective=aegan", "kl_weight=3"])
    assert config.ignored_settings(cfg) == ["method.kl_weight"]
    assert config.ignored_settings(config.load()) == []


def test_help_lists_every_key():
    out = subprocess.run([sys.executable, "-m", "suite.train", "--help"], capture_output=True, text=True, check=True).stdout
    for key, leaf in config.leaf_fields().items():
        assert key in out
        assert leaf.metadata["help"].split()[0] in out


def test_cli_rejects_bad_value_before_loading_data():
    result = subprocess.run([sys.executable, "-m", "suite.train", "--set", "image_size=48"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "data.image_size" in result.stderr
    assert "48" in result.stderr
