"""The radius sweep: decode codes of fixed norms, and the sharpness measure it reports.

Codes ``z = r * sqrt(nz) * u`` use fixed unit directions ``u`` (drawn once from a seeded
generator), so ``r = 1`` is the typical norm of a prior sample and ``r = 0`` is the centre of the
code space, where E's codes sit when the z-penalty works.

Sharpness is the variance of the Laplacian, a common focus measure. Each channel of each
image, scaled to [0, 1], is convolved with the 3x3 kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
without padding. The variance of the response over the pixels is then averaged over channels
and images. Blurry images have a low value. The evaluator reports it relative to real images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from suite import imaging

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_CHUNK = 1024


def directions(count: int, nz: int, generator: torch.Generator) -> torch.Tensor:
    """Return ``count`` unit vectors (count, nz), uniform on the sphere, drawn from ``generator``."""
    u = torch.randn(count, nz, generator=generator)
    return u / u.norm(dim=1, keepdim=True)


def codes(unit: torch.Tensor, radius: float) -> torch.Tensor:
    """Return codes of norm ``radius * sqrt(nz)`` along the unit vectors ``unit`` (N, nz)."""
    return unit * (radius * math.sqrt(unit.shape[1]))


def sharpness(images: torch.Tensor) -> float:
    """Return the mean variance of the Laplacian of uint8 images (N, C, H, W) scaled to [0, 1].

    Raises:
        ValueError: not uint8 images, or images smaller than 3x3.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or min(images.shape[-2:]) < 3:
        raise ValueError(f"sharpness needs uint8 images (N, C, H, W) of at least 3x3, got {images.dtype} "
                         f"{tuple(images.shape)}")
    kernel = LAPLACIAN.view(1, 1, 3, 3)
    total, maps = 0.0, 0
    for chunk in images.split(_CHUNK):
        x = chunk.cpu().float().div(255).flatten(0, 1).unsqueeze(1)
        response = F.conv2d(x, kernel)
        total += float(response.flatten(1).var(dim=1, unbiased=False).double().sum())
        maps += x.shape[0]
    return total / maps


def strip(rows: torch.Tensor) -> torch.Tensor:
    """Tile uint8 images (directions, radii, C, H, W) into one uint8 image (C, H', W').

    Each row is one fixed direction and the radius grows from left to right.
    """
    if rows.dtype != torch.uint8 or rows.dim() != 5:
        raise ValueError(f"expected uint8 images (directions, radii, C, H, W), got {rows.dtype} {tuple(rows.shape)}")
    return imaging.grid(rows.flatten(0, 1), nrow=rows.shape[1])
