"""The one conversion between the generator's tanh range and uint8 pixels, and image grids."""

from __future__ import annotations

import math

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Convert images in [-1, 1] (G's tanh range) to uint8 in [0, 255], rounding and clamping.

    -1 maps to 0, +1 to 255 and 0 to 128 (127.5 rounded half to even gives 128).
    """
    return ((x.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images in [0, 255] to float32 in [-1, 1], the inverse of ``to_uint8``."""
    return x.float().div(127.5).sub(1)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Repeat single-channel images (N, 1, H, W) to three channels; RGB passes through."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got shape {tuple(x.shape)}")
    return x


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one uint8 image (C, rows * H', nrow * W').

    ``nrow`` defaults to the square root of N, rounded up; gaps are ``padding`` pixels of 0.
    """
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        canvas[:, top : top + h, left : left + w] = images[i].cpu()
    return canvas


def scatter(points: torch.Tensor, real: torch.Tensor | None = None, centers: torch.Tensor | None = None,
            size: int = 320) -> torch.Tensor:
    """Render 2-D points (N, 2) as a uint8 RGB image (3, size, size) with matplotlib.

    Generated points are drawn in blue over real points in grey, with mixture centres as red crosses.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(size / 80, size / 80), dpi=80)
    if real is not None:
        axes.scatter(real[:, 0], real[:, 1], s=2, c="0.7", label="real")
    axes.scatter(points[:, 0], points[:, 1], s=4, c="tab:blue", label="generated")
    if centers is not None:
        axes.scatter(centers[:, 0], centers[:, 1], s=30, c="tab:red", marker="x", label="centres")
    axes.set_aspect("equal")
    figure.tight_layout()
    figure.canvas.draw()
    rgba = torch.from_numpy(_figure_pixels(figure))
    plt.close(figure)
    return rgba[:, :, :3].permute(2, 0, 1).contiguous()


def _figure_pixels(figure):
    """Return a drawn matplotlib figure's pixels as a uint8 array (H, W, 4)."""
    import numpy as np

    return np.asarray(figure.canvas.buffer_rgba(), dtype=np.uint8).copy()
