"""Radius sweep pieces: directions, code norms, sharpness by hand, the strip and the uint8 conversion."""

import math
import socket

import pytest
import torch
import torchvision.transforms.functional as TF

from suite import imaging
from suite.metrics import radius


def _refuse_connection(*args, **kwargs):
    raise OSError("network access is disabled in the metrics tests")


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse_connection)
        yield


def test_directions_are_unit_and_fixed():
    first = radius.directions(50, 100, torch.Generator().manual_seed(3))
    again = radius.directions(50, 100, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert torch.allclose(first.norm(dim=1), torch.ones(50))


def test_codes_have_requested_norm():
    unit = radius.directions(20, 100, torch.Generator().manual_seed(0))
    for r in (0.0, 0.25, 1.0, 1.25):
        norms = radius.codes(unit, r).norm(dim=1)
        assert torch.allclose(norms, torch.full((20,), r * math.sqrt(100)), atol=1e-5)


def test_sharpness_of_single_spot_by_hand():
    image = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    image[0, 0, 2, 2] = 255
    # valid 3x3 response: -4 at the centre, 1 at its four neighbours, 0 at the corners
    assert radius.sharpness(image) == pytest.approx(20 / 9)


def test_sharpness_constant_is_zero_and_blur_lowers_it():
    assert radius.sharpness(torch.full((3, 3, 8, 8), 77, dtype=torch.uint8)) == 0.0
    noise = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert radius.sharpness(TF.gaussian_blur(noise, [5, 5], [1.5, 1.5])) < 0.2 * radius.sharpness(noise)


def test_sharpness_averages_channels_and_images():
    spot = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    spot[0, 0, 2, 2] = 255
    flat = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    assert radius.sharpness(torch.cat([spot, flat])) == pytest.approx(10 / 9)
    assert radius.sharpness(torch.cat([spot, flat], dim=1)) == pytest.approx(10 / 9)


def test_sharpness_rejects_points_and_floats():
    with pytest.raises(ValueError, match="uint8 images"):
        radius.sharpness(torch.randn(100, 2))
    with pytest.raises(ValueError, match="uint8 images"):
        radius.sharpness(torch.rand(2, 1, 8, 8))


def test_strip_rows_are_directions():
    rows = torch.zeros(4, 6, 1, 32, 32, dtype=torch.uint8)
    rows[1, 2] = 200
    strip = radius.strip(rows)
    assert tuple(strip.shape) == (1, 4 * 34 + 2, 6 * 34 + 2)
    top, left = 2 + 1 * 34, 2 + 2 * 34
    assert strip[0, top : top + 32, left : left + 32].eq(200).all()
    assert strip.sum() == 200 * 32 * 32


def test_strip_rejects_floats():
    with pytest.raises(ValueError, match="uint8"):
        radius.strip(torch.zeros(2, 3, 1, 8, 8))


def test_conversion_edges():
    values = torch.tensor([-1.0, 1.0, 0.0, -1.5, 1.5])
    assert imaging.to_uint8(values).tolist() == [0, 255, 128, 0, 255]
    assert imaging.to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
