"""The three objectives (dcgan, aegan, vaegan), the z-penalty with its floor and the two switches.

Loss terms keep one name each everywhere (MLflow keys included):

| term | reaches | when |
|---|---|---|
| ``loss_D_real``, ``loss_D_fake`` | D | always |
| ``loss_D_rec`` | D | ``ae_to_d``: D also calls reconstructions fake |
| ``loss_G_adv`` | G | always; non-saturating BCE on G(z) |
| ``loss_G_adv_rec`` | G only | ``recon_adv``: G also makes reconstructions fool D |
| ``loss_rec`` | G and E | aegan, vaegan; ``recon_weight`` times MSE (or L1), mean over pixels |
| ``loss_zpen`` | E only | aegan; ``z_penalty * mean(max(0, |z_enc|^2 - z_floor^2))`` |
| ``loss_kl`` | E only | vaegan; ``kl_weight * mean over batch of KL(q(z|x) || N(0, I))`` |

Every term is already multiplied by its weight, so the sum of the reported terms is the loss.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.config import MethodConfig
from suite.models import Networks


def pack(x: torch.Tensor, pac: int) -> torch.Tensor:
    """Stack groups of ``pac`` consecutive examples on the channel axis (PacGAN); 1 is a no-op."""
    if pac == 1:
        return x
    if x.shape[0] % pac:
        raise ValueError(f"batch of {x.shape[0]} is not a multiple of pac={pac}")
    return x.reshape(x.shape[0] // pac, x.shape[1] * pac, *x.shape[2:])


def z_penalty(z_enc: torch.Tensor, weight: float, floor: float) -> torch.Tensor:
    """Return ``weight * mean_batch(max(0, |z_enc|^2 - floor^2))``: zero inside the floor's ball."""
    excess = z_enc.pow(2).sum(dim=1) - floor**2
    return weight * F.relu(excess).mean()


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Return KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions, averaged over the batch."""
    per_example = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
    return per_example.mean()


def reconstruction_loss(x_rec: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Return the mean squared (``mse``) or absolute (``l1``) pixel error."""
    if kind == "mse":
        return F.mse_loss(x_rec, x)
    if kind == "l1":
        return F.l1_loss(x_rec, x)
    raise ValueError(f"unknown recon_loss {kind!r}; expected mse or l1")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


@dataclass
class Forward:
    """Tensors of one forward pass that the D and G/E updates share."""

    x: torch.Tensor
    x_fake: torch.Tensor
    z_enc: torch.Tensor | None = None
    x_rec: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


def forward(nets: Networks, x: torch.Tensor, z: torch.Tensor) -> Forward:
    """Run G on prior codes and, when E exists, the AE path x -> E -> z_enc -> G -> x_rec.

    For vaegan ``z_enc`` is drawn with the reparameterisation trick from the global torch RNG.
    """
    out = Forward(x=x, x_fake=nets.G(z))
    if nets.E is None:
        return out
    if nets.variational:
        out.mu, out.logvar = nets.E(x)
        out.z_enc = out.mu + torch.randn_like(out.mu) * (0.5 * out.logvar).exp()
    else:
        out.z_enc = nets.E(x)
    out.x_rec = nets.G(out.z_enc)
    return out


def discriminator_terms(
    D: nn.Module, fwd: Forward, ae_to_d: bool, pac: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Return D's loss terms and its accuracies on this batch.

    Generated images are detached, so these terms reach D only. Reconstructions are read only
    when ``ae_to_d`` is on: otherwise D's loss does not depend on them at all.
    """
    logits_real = D(pack(fwd.x, pac))
    logits_fake = D(pack(fwd.x_fake.detach(), pac))
    terms = {"loss_D_real": _bce(logits_real, 1.0), "loss_D_fake": _bce(logits_fake, 0.0)}
    accuracy = {
        "d_acc_real": (logits_real.detach() > 0).float().mean(),
        "d_acc_fake": (logits_fake.detach() < 0).float().mean(),
    }
    if ae_to_d and fwd.x_rec is not None:
        logits_rec = D(pack(fwd.x_rec.detach(), pac))
        terms["loss_D_rec"] = _bce(logits_rec, 0.0)
        accuracy["d_acc_rec"] = (logits_rec.detach() < 0).float().mean()
    return terms, accuracy


def generator_terms(
    D: nn.Module, fwd: Forward, method: MethodConfig, pac: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Return the G/E loss terms, split by the parameters they may reach.

    The first dict contains terms whose gradient may flow into both G and E (``loss_G_adv`` does
    not depend on E, ``loss_zpen`` and ``loss_kl`` do not depend on G). The second contains
    ``loss_G_adv_rec``, which must reach G only: the caller back-propagates it into G's
    parameters alone.
    """
    shared = {"loss_G_adv": _bce(D(pack(fwd.x_fake, pac)), 1.0)}
    g_only: dict[str, torch.Tensor] = {}
    if fwd.x_rec is None:
        return shared, g_only
    shared["loss_rec"] = method.recon_weight * reconstruction_loss(fwd.x_rec, fwd.x, method.recon_loss)
    if fwd.mu is not None:
        shared["loss_kl"] = method.kl_weight * kl_to_standard_normal(fwd.mu, fwd.logvar)
    else:
        shared["loss_zpen"] = z_penalty(fwd.z_enc, method.z_penalty, method.z_floor)
    if method.recon_adv:
        g_only["loss_G_adv_rec"] = _bce(D(pack(fwd.x_rec, pac)), 1.0)
    return shared, g_only


class Trainer:
    """One optimisation step of the chosen objective: a D update, then a joint G/E update."""

    def __init__(
        self,
        nets: Networks,
        optimizers: dict[str, torch.optim.Optimizer],
        method: MethodConfig,
        pac: int,
        autocast: AbstractContextManager | None = None,
    ):
        self.nets = nets
        self.optimizers = optimizers
        self.method = method
        self.pac = pac
        self.autocast = autocast if autocast is not None else nullcontext()
        self.ge_params = [p for name in ("G", "E") if name in optimizers for p in _params(nets, name)]
        self.g_params = list(nets.G.parameters())

    def step(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update D, then G and E, on real images ``x`` and prior codes ``z``.

        Returns detached scalar tensors (loss terms, D accuracies) and ``code_norm``, the
        per-example norms of E's codes; nothing here synchronises with the device.
        """
        with self.autocast:
            fwd = forward(self.nets, x, z)

        # D update. Generated images are detached, so nothing here reaches G or E.
        with self.autocast:
            d_terms, stats = discriminator_terms(self.nets.D, fwd, self.method.ae_to_d, self.pac)
        self.optimizers["D"].zero_grad(set_to_none=True)
        sum(d_terms.values()).backward()
        self.optimizers["D"].step()

        # G/E update against the updated D. ``inputs=`` keeps these losses out of D's gradients.
        with self.autocast:
            shared, g_only = generator_terms(self.nets.D, fwd, self.method, self.pac)
        for name in ("G", "E"):
            if name in self.optimizers:
                self.optimizers[name].zero_grad(set_to_none=True)
        sum(shared.values()).backward(inputs=self.ge_params, retain_graph=bool(g_only))
        if g_only:
            sum(g_only.values()).backward(inputs=self.g_params)
        for name in ("G", "E"):
            if name in self.optimizers:
                self.optimizers[name].step()

        stats.update({k: v.detach() for k, v in {**d_terms, **shared, **g_only}.items()})
        if fwd.z_enc is not None:
            stats["code_norm"] = fwd.z_enc.detach().float().norm(dim=1)
        return stats


def _params(nets: Networks, name: str) -> list[nn.Parameter]:
    return list(nets.modules()[name].parameters())


def make_optimizers(nets: Networks, lr: dict[str, float], betas: tuple[float, float]) -> dict[str, torch.optim.Optimizer]:
    """Create one Adam optimiser per network, with the learning rates keyed by network name."""
    return {
        name: torch.optim.Adam(module.parameters(), lr=lr[name], betas=tuple(betas))
        for name, module in nets.modules().items()
    }
