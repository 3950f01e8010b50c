"""log p(x) by the importance-weighted bound (study/likelihood.py): its log weights by hand, its
value against a quadrature of the exact integral, and how it tightens with K."""
import math

import pytest
import torch
from decoders import seeded_decoder
from torch import nn

from inverse_vae.errors import StudyError
from inverse_vae.inversion.plain import plain_layers
from inverse_vae.inversion.posterior import _elbo, negative_log_joint, posterior_reason
from inverse_vae.study.likelihood import iwae_bound, log_weights


class TinyVAE(nn.Module):
    """A VAE's interface over a test decoder: linear mean and log-variance heads (fixed seed)."""

    variational = True

    def __init__(self, decoder: nn.Sequential, seed: int = 0, log_var: float = -1.0):
        super().__init__()
        self.decoder, self.offset = decoder, log_var
        d, out = decoder[0].in_features, decoder[-2].out_features
        torch.manual_seed(seed)
        self.mean_head, self.log_var_head = nn.Linear(out, d).double(), nn.Linear(out, d).double()

    def encode(self, x):
        x = x.reshape(x.shape[0], -1)
        return 0.5 * self.mean_head(x), self.offset + 0.1 * self.log_var_head(x)


def _images(n: int, out: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_log_weights_are_log_likelihood_plus_log_prior_minus_log_q():
    decoder = seeded_decoder((3, 7, 11), seed=1)
    layers, _, _ = plain_layers(decoder, torch.float64)
    gen = torch.Generator().manual_seed(2)
    x, mean = _images(4, 11), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    log_var, eps = 0.3 * torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(4, 5, 3, generator=gen,
                                                                                             dtype=torch.float64)
    z = mean[:, None] + (0.5 * log_var).exp()[:, None] * eps
    normal, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(mean[:, None], (0.5 * log_var).exp()[:, None])
    for j in range(5):
        log_likelihood = -negative_log_joint(decoder, z[:, j], x) + 0.5 * (z[:, j] ** 2).sum(1)
        expected = log_likelihood + normal.log_prob(z[:, j]).sum(1) - q.log_prob(z)[:, j].sum(1)
        assert torch.allclose(log_weights(layers, x, mean, log_var, eps)[:, j], expected, rtol=1e-12)


def _one_latent_vae(log_var: float = -0.5) -> TinyVAE:
    """One latent, so that log p(x) is a 1-D integral; log_var sets how narrow (poor) q is."""
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(1, 6, bias=False), nn.Tanh(), nn.Linear(6, 10), nn.Sigmoid()).double()
    with torch.no_grad():
        decoder[0].weight.copy_(torch.linspace(-2, 2, 6)[:, None])
    return TinyVAE(decoder, log_var=log_var)


def _log_p_by_quadrature(decoder, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log of the integral of p(x|z) N(z; 0, 1) over a fine grid of the one latent."""
    grid = torch.linspace(-12, 12, 24001, dtype=torch.float64)[:, None]
    step = float(grid[1] - grid[0])
    log_joint = torch.stack([-negative_log_joint(decoder, grid, xi.expand(len(grid), -1), constant=True) for xi in x])
    return torch.logsumexp(log_joint, 1) + math.log(step)


def test_with_many_draws_the_bound_meets_log_p_x_by_quadrature():
    # Over seeds the K = 3000 mean is within 0.002 (one standard deviation) of the exact value here.
    model, x = _one_latent_vae(), _images(32, 10, seed=3)
    exact = -_log_p_by_quadrature(model.decoder, x)
    bound = iwae_bound(model, x, k=3000, seed=5)
    assert abs(bound["nats"] - float(exact.mean())) < 0.006
    assert torch.allclose(bound["per_image"], exact, atol=0.1)
    assert bound["elbo_nats"] - float(exact.mean()) > 0.05  # K = 1 is visibly looser: the check can fail


def test_the_bound_tightens_as_k_grows():
    # A narrow q (log_var -2), so the steps between K are large; on 512 images each is over four
    # standard deviations of the estimates (measured over seeds).
    model, x = _one_latent_vae(log_var=-2.0), _images(512, 10, seed=4)
    nats = [iwae_bound(model, x, k=k, seed=1)["nats"] for k in (1, 10, 100)]
    assert nats[0] > nats[1] > nats[2] > float(-_log_p_by_quadrature(model.decoder, x).mean())


def test_k_equal_one_is_the_elbo_and_the_bound_lies_below_it():
    decoder = seeded_decoder((4, 12, 30), scale=2.0, seed=4)
    model, x = TinyVAE(decoder), _images(64, 30, seed=6)
    one = iwae_bound(model, x, k=1, seed=0)
    assert one["nats"] == one["elbo_nats"]
    many = iwae_bound(model, x, k=100, seed=1)
    # the negative ELBO by _elbo() (closed-form KL, its own draws) is above the K = 100 estimate
    mean, log_var = model.encode(x)
    negative_elbo = -float(_elbo(decoder, x, mean.detach(), log_var.detach(), samples=1000, seed=2).mean())
    assert many["nats"] < negative_elbo
    assert math.isclose(many["elbo_nats"], negative_elbo, rel_tol=0.01)
    assert many["n"] == 64 and many["k"] == 100 and many["stderr"] > 0


def test_seeded_and_refused_where_it_does_not_apply():
    model, x = _one_latent_vae(), _images(5, 10)
    assert iwae_bound(model, x, k=7, seed=3)["nats"] == iwae_bound(model, x, k=7, seed=3)["nats"]
    assert iwae_bound(model, x, k=7, seed=3)["nats"] != iwae_bound(model, x, k=7, seed=4)["nats"]
    model.variational = False
    assert "autoencoder" in posterior_reason(model)
    with pytest.raises(StudyError, match="does not apply") as raised:
        iwae_bound(model, x)
    assert "\n" not in str(raised.value)
