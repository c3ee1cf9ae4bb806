"""DCGAN generator G, discriminator D and encoder E, plus small MLPs for 2-D point data.

Image nets follow DCGAN (Radford et al., 2016): strided (transposed) convolutions with 4x4
kernels, batch norm in G and in the hidden layers of D and E, ReLU in G, LeakyReLU(0.2) in D and
E and tanh on G's output. Weights are drawn from N(0, 0.02), batch-norm scales from N(1, 0.02).
E is D's body with an ``nz``-wide head (two heads, mean and log-variance, for vaegan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from suite.config import RunConfig

POINT_DIM = 2  # ring8 and grid25 live in the plane


def _doublings(image_size: int) -> int:
    """Return how many stride-2 stages separate a 4x4 map from ``image_size``."""
    return int(math.log2(image_size)) - 2


class ConvGenerator(nn.Module):
    """Maps z of shape (B, nz) to images (B, channels, size, size) in [-1, 1]."""

    def __init__(self, nz: int, ngf: int, channels: int, image_size: int):
        super().__init__()
        stages = _doublings(image_size)
        width = ngf * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class ConvBody(nn.Module):
    """D's and E's shared shape: strided convolutions from the image down to a 4x4 map."""

    def __init__(self, channels: int, width: int, image_size: int):
        super().__init__()
        stages = _doublings(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width * 2),
                nn.LeakyReLU(0.2, True),
            ]
            width *= 2
        self.net = nn.Sequential(*layers)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDiscriminator(nn.Module):
    """Maps images (B, channels * pac, size, size) to one logit per (packed) example."""

    def __init__(self, channels: int, ndf: int, image_size: int):
        super().__init__()
        self.body = ConvBody(channels, ndf, image_size)
        self.head = nn.Conv2d(self.body.out_channels, 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).flatten()


class ConvEncoder(nn.Module):
    """Maps images to codes (B, nz); with ``variational`` also to log-variances (B, nz)."""

    def __init__(self, channels: int, nef: int, image_size: int, nz: int, variational: bool):
        super().__init__()
        self.body = ConvBody(channels, nef, image_size)
        self.variational = variational
        heads = 2 if variational else 1
        self.head = nn.Conv2d(self.body.out_channels, nz * heads, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.body(x)).flatten(1)
        if self.variational:
            mu, logvar = out.chunk(2, dim=1)
            return mu, logvar
        return out


def _mlp(inputs: int, width: int, outputs: int, activation: nn.Module, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size_in in (inputs, width):
        layers.append(nn.Linear(size_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation)
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class PointGenerator(nn.Module):
    """Maps z (B, nz) to points (B, 2); no tanh because grid25 spans [-4, 4]."""

    def __init__(self, nz: int, width: int):
        super().__init__()
        self.net = _mlp(nz, width, POINT_DIM, nn.ReLU(True), batch_norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PointDiscriminator(nn.Module):
    """Maps points (B, 2 * pac) to one logit per (packed) example."""

    def __init__(self, width: int, pac: int):
        super().__init__()
        self.net = _mlp(POINT_DIM * pac, width, 1, nn.LeakyReLU(0.2, True), batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class PointEncoder(nn.Module):
    """Maps points (B, 2) to codes (B, nz), or to (mean, log-variance) when ``variational``."""

    def __init__(self, width: int, nz: int, variational: bool):
        super().__init__()
        self.variational = variational
        self.net = _mlp(POINT_DIM, width, nz * (2 if variational else 1), nn.LeakyReLU(0.2, True), True)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        if self.variational:
            mu, logvar = out.chunk(2, dim=1)
            return mu, logvar
        return out


def init_dcgan(module: nn.Module) -> None:
    """Apply DCGAN initialisation: conv and linear weights N(0, 0.02), batch norm N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@dataclass
class Networks:
    """The networks of one run; ``E`` is None for dcgan."""

    G: nn.Module
    D: nn.Module
    E: nn.Module | None
    nz: int
    variational: bool

    def modules(self) -> dict[str, nn.Module]:
        """Return the networks that exist, by name."""
        found = {"G": self.G, "D": self.D}
        if self.E is not None:
            found["E"] = self.E
        return found

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return E's deterministic codes for ``x`` (the mean for vaegan)."""
        if self.E is None:
            raise ValueError("dcgan has no encoder; codes exist only for aegan and vaegan")
        out = self.E(x)
        return out[0] if self.variational else out

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)


def build(cfg: RunConfig, channels: int, points: bool) -> Networks:
    """Build G, D and (unless dcgan) E for ``cfg`` with DCGAN initialisation.

    Args:
        cfg: the run config (model sizes, objective, image size, packing).
        channels: image channel count of the loaded data (ignored for points).
        points: True for 2-D point data, which gets MLPs.
    """
    m, objective = cfg.model, cfg.method.objective
    variational = objective == "vaegan"
    if points:
        G = PointGenerator(m.nz, m.ngf)
        D = PointDiscriminator(m.ndf, m.pac)
        E = PointEncoder(m.nef, m.nz, variational) if objective != "dcgan" else None
    else:
        size = cfg.data.image_size
        G = ConvGenerator(m.nz, m.ngf, channels, size)
        D = ConvDiscriminator(channels * m.pac, m.ndf, size)
        E = ConvEncoder(channels, m.nef, size, m.nz, variational) if objective != "dcgan" else None
    nets = Networks(G, D, E, m.nz, variational)
    for module in nets.modules().values():
        module.apply(init_dcgan)
    return nets
