"""The VAE's posterior per image (inversion/posterior.py, issue #25): MAP by trust-region Newton on the
negative log joint with its exact Hessian, its SciPy peer, and per-image ELBO optimization (SVI)."""
import math

import pytest
import torch
from decoders import seeded_decoder, small_decoder
from torch import nn

from inverse_vae.errors import StudyError
from inverse_vae.inversion.methods import MAP, MAP_PEER, METHODS, SVI, run_method
from inverse_vae.inversion.plain import forward, forward_jacobian, plain_layers
from inverse_vae.inversion.posterior import _elbo, amortization_gap, negative_log_joint, posterior_reason, svi
from inverse_vae.inversion.solvers import _newton_terms, optimize

SIZES = (3, 9, 14, 20)


class TinyVAE(nn.Module):
    """A VAE's interface over a test decoder: a random linear encoder with mean and log-variance heads
    (a poor amortized q, so that refining it per image has something to gain)."""

    variational = True

    def __init__(self, decoder: nn.Sequential, seed: int = 0):
        super().__init__()
        self.decoder = decoder
        d, out = decoder[0].in_features, decoder[-2].out_features
        torch.manual_seed(seed)
        self.mean_head, self.log_var_head = nn.Linear(out, d).double(), nn.Linear(out, d).double()

    def encode(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.mean_head(x), -1.0 + 0.1 * self.log_var_head(x)


def _images(n: int, out: int, seed: int = 1) -> torch.Tensor:
    """Real-like images: not in the decoder's range, with exact 0s and 1s as MNIST has."""
    x = torch.rand(n, out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.where(x < 0.3, 0.0, torch.where(x > 0.9, 1.0, x))


def test_map_objective_is_bce_summed_plus_half_the_squared_norm():
    decoder = small_decoder(out=12).double()
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = _images(4, 12)
    with torch.no_grad():
        p = decoder(z)
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).sum(1) + 0.5 * (z**2).sum(1)
    assert torch.allclose(negative_log_joint(decoder, z, x), by_hand, rtol=1e-12)
    assert torch.allclose(negative_log_joint(decoder, z, x, constant=True), by_hand + 2 * math.log(2 * math.pi))
    # optimize's objective with no step taken is the same number
    start = optimize(decoder, x, method="newton_tr", objective="bce", prior_weight=1.0, init=z, steps=0)
    assert torch.allclose(start.info["objective"], by_hand, rtol=1e-12)


def test_bce_hessian_matches_autograd():
    decoder = seeded_decoder(SIZES, scale=2.0, seed=6)  # saturating: the second-order term matters
    layers, _, _ = plain_layers(decoder, torch.float64)
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(3, SIZES[0], generator=gen, dtype=torch.float64)
    x = _images(3, SIZES[-1], seed=5)
    _, hess, grad = _newton_terms(layers, z, x, 1.0, 2, objective="bce")
    _, jac_t = forward_jacobian(layers[:-1], z)  # of the logits
    for i in range(3):
        def log_joint(zi, xi=x[i]):
            p = forward(layers, zi[None])[0]
            return -(xi * p.log() + (1 - xi) * (1 - p).log()).sum() + 0.5 * (zi * zi).sum()

        expected = torch.autograd.functional.hessian(log_joint, z[i])
        gradient = torch.autograd.functional.jacobian(log_joint, z[i])
        assert torch.allclose(grad[i], gradient, atol=1e-10)
        assert torch.allclose(hess[i], expected, atol=1e-10)
        # The second-order term matters here (x is not D(z)): the Gauss-Newton matrix J^T diag(s (1 - s)) J + I
        # is not the Hessian, so a dropped term would fail the line above.
        s = forward(layers, z[i:i + 1])[0]
        gauss_newton = (jac_t[i] * (s * (1 - s))) @ jac_t[i].T + torch.eye(SIZES[0], dtype=torch.float64)
        assert not torch.allclose(gauss_newton, expected, atol=1e-6)


def _vae_and_images(n: int = 24):
    decoder = seeded_decoder(SIZES, scale=2.0, seed=2)
    return TinyVAE(decoder), _images(n, SIZES[-1], seed=8)


def test_newton_map_lowers_the_log_joint_of_every_encoder_mean_to_a_stationary_point():
    model, x = _vae_and_images()
    result = run_method(MAP, None, x, model)
    start = model.encode(x)[0].detach()
    before, after = negative_log_joint(model.decoder, start, x), negative_log_joint(model.decoder, result.z, x)
    assert (after < before - 1e-6).all()
    assert torch.allclose(result.info["objective"], after, rtol=1e-12)
    assert result.info["converged"].all()
    layers, _, _ = plain_layers(model.decoder, torch.float64)
    _, _, grad = _newton_terms(layers, result.z, x, 1.0, 64, objective="bce")
    assert grad.norm(dim=1).max() < 1e-6


def test_newton_map_matches_scipy_within_a_thousandth_on_every_image():
    model, x = _vae_and_images()
    newton, scipy = run_method(MAP, None, x, model), run_method(MAP_PEER, None, x, model)
    a, b = newton.info["objective"], scipy.info["objective"]
    assert ((a - b).abs() <= 1e-3 * b.abs()).all()
    assert (a <= b * (1 + 1e-9)).all()  # and no worse: the exact Hessian converges as far as float64 allows


def test_the_prior_keeps_map_finite_where_pixel_fit_alone_runs_off():
    model, x = _vae_and_images(8)
    no_prior = run_method(MAP, None, x, model, prior_weight=0.0, steps=200)
    with_prior = run_method(MAP, None, x, model)
    assert with_prior.z.norm(dim=1).max() < no_prior.z.norm(dim=1).max()
    assert (with_prior.info["bce"] >= no_prior.info["bce"] - 1e-9).all()  # the prior costs pixel fit


def test_bce_objective_and_the_posterior_are_refused_where_they_do_not_apply():
    linear_out = nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.1), nn.Linear(8, 10)).double()
    with pytest.raises(StudyError, match="ending in Sigmoid") as raised:
        optimize(linear_out, torch.rand(2, 10, dtype=torch.float64), method="newton_tr", objective="bce")
    assert "\n" not in str(raised.value)
    with pytest.raises(StudyError, match="objective must be one of"):
        optimize(small_decoder().double(), torch.rand(2, 50, dtype=torch.float64), method="newton_tr", objective="mse")

    class Autoencoder(nn.Module):
        variational = False

        def __init__(self):
            super().__init__()
            self.decoder = linear_out

        def encode(self, x):
            return x[:, :3], None

    reason = posterior_reason(Autoencoder())
    assert "autoencoder" in reason and "\n" not in reason
    assert posterior_reason(TinyVAE(seeded_decoder(SIZES))) is None
    with pytest.raises(StudyError, match="does not apply: the autoencoder"):
        svi(Autoencoder(), torch.rand(2, 10, dtype=torch.float64))


def test_svi_raises_the_elbo_of_the_encoders_q_on_every_image():
    model, x = _vae_and_images()
    result = run_method(SVI, None, x, model, steps=300)
    assert torch.equal(result.z, result.info["mean"]) and result.info["log_var"].shape == result.z.shape
    gap = amortization_gap(model, x, result, samples=2000)
    assert gap["gap"] > 5 * gap["gap_stderr"] > 0
    assert gap["improved"] == 1.0
    # the gap is the difference of the two ELBOs, each estimated by _elbo() with the same draws
    q = result.info
    encoder_elbo = _elbo(model.decoder, x, q["encoder_mean"], q["encoder_log_var"], samples=2000)
    assert math.isclose(gap["encoder_elbo"], float(encoder_elbo.mean()), rel_tol=1e-12)


def test_elbo_of_a_point_mass_like_q_is_the_log_likelihood_minus_the_closed_form_kl():
    decoder = seeded_decoder(SIZES, seed=3)
    x = _images(5, SIZES[-1])
    mean = torch.randn(5, SIZES[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    log_var = torch.full_like(mean, -30.0)  # sigma ~ 3e-7: every draw is the mean
    kl = 0.5 * (mean**2 + log_var.exp() - log_var - 1).sum(1)
    expected = -negative_log_joint(decoder, mean, x) + 0.5 * (mean**2).sum(1) - kl
    assert torch.allclose(_elbo(decoder, x, mean, log_var, samples=4), expected, rtol=1e-6)


def test_svi_is_seeded_and_its_methods_are_registered():
    model, x = _vae_and_images(4)
    a, b = svi(model, x, steps=20, seed=3), svi(model, x, steps=20, seed=3)
    assert torch.equal(a.z, b.z) and torch.equal(a.info["log_var"], b.info["log_var"])
    assert not torch.equal(a.z, svi(model, x, steps=20, seed=4).z)
    for name in (MAP, MAP_PEER, SVI):  # a prior term: 05 leaves them out of the realizable comparison
        assert METHODS[name].options["prior_weight"] == 1.0
