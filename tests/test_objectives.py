"""Gradient-flow tests: one per rule of the method, on small real networks."""

import math

import pytest
import torch

from suite import config, models, objectives

SIZE, NZ = 32, 8


def _setup(objective="aegan", **method):
    cfg = config.apply(config.RunConfig(), {
        "data.image_size": SIZE, "model.nz": NZ, "model.ngf": 8, "model.ndf": 8, "model.nef": 8,
        "method.objective": objective, **{f"method.{k}": v for k, v in method.items()},
    })
    torch.manual_seed(0)
    nets = models.build(cfg, channels=1, points=False)
    x = torch.rand(4, 1, SIZE, SIZE) * 2 - 1
    z = torch.randn(4, NZ)
    return cfg, nets, x, z


def _grads(loss, module):
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g for g in grads if g is not None]


def _norm(grads):
    return sum(g.abs().sum().item() for g in grads)


def test_d_loss_ignores_reconstructions_without_ae_to_d():
    cfg, nets, x, z = _setup(ae_to_d=False)
    fwd = objectives.forward(nets, x, z)
    terms_a, _ = objectives.discriminator_terms(nets.D, fwd, ae_to_d=False, pac=1)
    grads_a = _grads(sum(terms_a.values()), nets.D)

    fwd.x_rec = torch.rand_like(fwd.x_rec) * 2 - 1  # entirely different reconstructions
    terms_b, _ = objectives.discriminator_terms(nets.D, fwd, ae_to_d=False, pac=1)
    grads_b = _grads(sum(terms_b.values()), nets.D)

    assert "loss_D_rec" not in terms_a
    assert torch.equal(sum(terms_a.values()), sum(terms_b.values()))
    for a, b in zip(grads_a, grads_b):
        assert torch.equal(a, b)


def test_d_loss_uses_reconstructions_with_ae_to_d():
    cfg, nets, x, z = _setup(ae_to_d=True)
    fwd = objectives.forward(nets, x, z)
    terms, accuracy = objectives.discriminator_terms(nets.D, fwd, ae_to_d=True, pac=1)
    assert "loss_D_rec" in terms
    assert "d_acc_rec" in accuracy
    assert _norm(_grads(terms["loss_D_rec"], nets.D)) > 0


def test_d_terms_do_not_reach_g_or_e():
    cfg, nets, x, z = _setup(ae_to_d=True)
    fwd = objectives.forward(nets, x, z)
    terms, _ = objectives.discriminator_terms(nets.D, fwd, ae_to_d=True, pac=1)
    total = sum(terms.values())
    assert _grads(total, nets.G) == []
    assert _grads(total, nets.E) == []


def test_no_adversarial_gradient_through_reconstructions_without_recon_adv():
    cfg, nets, x, z = _setup(recon_adv=False)
    fwd = objectives.forward(nets, x, z)
    shared, g_only = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert g_only == {}
    # The only adversarial term is on G(z): its gradient with respect to x_rec does not exist.
    (grad,) = torch.autograd.grad(shared["loss_G_adv"], fwd.x_rec, retain_graph=True, allow_unused=True)
    assert grad is None
    # And it does not reach E, whose codes only feed reconstructions.
    assert _grads(shared["loss_G_adv"], nets.E) == []


def test_recon_adv_reaches_g_only_in_step():
    cfg, nets, x, z = _setup(recon_adv=True)
    fwd = objectives.forward(nets, x, z)
    shared, g_only = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert set(g_only) == {"loss_G_adv_rec"}
    (grad,) = torch.autograd.grad(g_only["loss_G_adv_rec"], fwd.x_rec, retain_graph=True)
    assert grad.abs().sum() > 0

    # The trainer back-propagates it into G's parameters alone: E's gradient equals that of
    # the shared terms only.
    optimizers = objectives.make_optimizers(nets, {"G": 1e-3, "D": 1e-3, "E": 1e-3}, (0.5, 0.999))
    trainer = objectives.Trainer(nets, optimizers, cfg.method, pac=1)
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    sum(shared.values()).backward(inputs=trainer.ge_params, retain_graph=True)
    e_grad_shared = [p.grad.clone() for p in nets.E.parameters()]
    g_grad_shared = [p.grad.clone() for p in nets.G.parameters()]
    sum(g_only.values()).backward(inputs=trainer.g_params)
    for p, before in zip(nets.E.parameters(), e_grad_shared):
        assert torch.equal(p.grad, before)
    assert any(not torch.equal(p.grad, b) for p, b in zip(nets.G.parameters(), g_grad_shared))


def test_z_penalty_reaches_e_only():
    cfg, nets, x, z = _setup(z_penalty=1.0)
    fwd = objectives.forward(nets, x, z)
    shared, _ = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert _norm(_grads(shared["loss_zpen"], nets.E)) > 0
    assert _grads(shared["loss_zpen"], nets.G) == []
    assert _grads(shared["loss_zpen"], nets.D) == []


def test_z_penalty_floor_gradient_is_exact():
    floor, weight = 2.0, 0.5
    inside = torch.tensor([[1.0, 1.0], [0.0, 1.9]])             # norms sqrt(2) and 1.9
    outside = torch.tensor([[3.0, 0.0], [1.0, 2.0]])            # norms 3 and sqrt(5)
    z = torch.cat([inside, outside]).requires_grad_(True)
    loss = objectives.z_penalty(z, weight, floor)
    (grad,) = torch.autograd.grad(loss, z)

    assert torch.equal(grad[:2], torch.zeros(2, 2))
    # d/dz [w/B * (|z|^2 - f^2)] = 2 w z / B for codes outside the floor.
    expected = 2 * weight * outside / 4
    assert torch.allclose(grad[2:], expected)
    expected_loss = weight * ((9 - 4) + (5 - 4)) / 4
    assert loss.item() == pytest.approx(expected_loss)


def test_z_penalty_without_floor_is_plain_square():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert objectives.z_penalty(z, 0.1, 0.0).item() == pytest.approx(0.1 * 25 / 2)


def test_kl_term_matches_closed_form():
    torch.manual_seed(1)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert torch.allclose(objectives.kl_to_standard_normal(mu, logvar), expected, atol=1e-6)

    single = objectives.kl_to_standard_normal(torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]]))
    assert single.item() == pytest.approx(0.5 * (1 + 4 - 1 - math.log(4.0)))


def test_vaegan_has_kl_and_no_zpen():
    cfg, nets, x, z = _setup("vaegan", kl_weight=0.5)
    fwd = objectives.forward(nets, x, z)
    shared, _ = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert "loss_kl" in shared
    assert "loss_zpen" not in shared
    assert shared["loss_kl"].item() == pytest.approx(0.5 * objectives.kl_to_standard_normal(fwd.mu, fwd.logvar).item())


def test_dcgan_has_no_ae_terms():
    cfg, nets, x, z = _setup("dcgan")
    assert nets.E is None
    fwd = objectives.forward(nets, x, z)
    shared, g_only = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert set(shared) == {"loss_G_adv"}
    assert g_only == {}


def test_reconstruction_reaches_g_and_e():
    cfg, nets, x, z = _setup(z_penalty=0.0)
    fwd = objectives.forward(nets, x, z)
    shared, _ = objectives.generator_terms(nets.D, fwd, cfg.method, pac=1)
    assert _norm(_grads(shared["loss_rec"], nets.G)) > 0
    assert _norm(_grads(shared["loss_rec"], nets.E)) > 0
    assert _grads(shared["loss_rec"], nets.D) == []


def test_l1_reconstruction_loss():
    a, b = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    assert objectives.reconstruction_loss(a, b, "l1").item() == pytest.approx(0.5)
    assert objectives.reconstruction_loss(a, b, "mse").item() == pytest.approx(0.25)


def test_pack_stacks_on_channels():
    x = torch.arange(4 * 1 * 2 * 2, dtype=torch.float).reshape(4, 1, 2, 2)
    packed = objectives.pack(x, 2)
    assert packed.shape == (2, 2, 2, 2)
    assert torch.equal(packed[0, 1], x[1, 0])
    with pytest.raises(ValueError, match="multiple of pac"):
        objectives.pack(x[:3], 2)


def test_step_updates_d_without_touching_generator_path():
    cfg, nets, x, z = _setup(ae_to_d=True, recon_adv=True)
    optimizers = objectives.make_optimizers(nets, {"G": 1e-3, "D": 1e-3, "E": 1e-3}, (0.5, 0.999))
    before = {k: [p.clone() for p in m.parameters()] for k, m in nets.modules().items()}
    stats = objectives.Trainer(nets, optimizers, cfg.method, pac=1).step(x, z)
    for name, module in nets.modules().items():
        assert any(not torch.equal(p, b) for p, b in zip(module.parameters(), before[name])), name
    expected = {"loss_D_real", "loss_D_fake", "loss_D_rec", "loss_G_adv", "loss_G_adv_rec", "loss_rec", "loss_zpen",
                "d_acc_real", "d_acc_fake", "d_acc_rec", "code_norm"}
    assert set(stats) == expected
