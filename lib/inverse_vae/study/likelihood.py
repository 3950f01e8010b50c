"""How likely the model finds the test images: log p(x), bounded by importance sampling (Burda et al. 2016).

The negative ELBO the study reports (02) is an upper bound on -log p(x) that is loose by the
encoder's KL to the true posterior. The importance-weighted bound with K draws from the encoder's
q(z|x),

    log p(x) >= E[ logsumexp_k (log p(x|z_k) + log p(z_k) - log q(z_k|x)) - log K ],

tightens monotonically in K towards log p(x) (K = 1 is the ELBO). p(x|z) is the decoder's Bernoulli
likelihood (BCE summed over pixels, from the logits; MNIST's grey levels make it the study's
convention rather than a normalized density), p(z) = N(0, I).

Cost: K x N decoder passes (10^7 for the test set at K = 1000), so the passes are one matmul per
layer over a chunk of images x K latents in float32, chunked to bound memory (about `rows` latents,
each with its 784 logits), and only the sums over latents and draws are float64.
"""
from __future__ import annotations

import math
import time

import torch

from ..errors import StudyError
from ..inversion.plain import images, plain_layers
from ..inversion.posterior import log_likelihood, posterior_reason

__all__ = ["iwae_bound", "likelihood_reason", "log_weights"]


def likelihood_reason(model) -> str | None:
    """None when log p(x) applies to the model, else the one-line reason (for applies.skipped)."""
    return posterior_reason(model)


def log_weights(layers, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) (n, K) in float64 for z_k = mean + exp(log_var / 2) eps_k,
    eps (n, K, d): the decoder in the layers' dtype, the Gaussian terms in float64."""
    scale = (0.5 * log_var).exp()
    z = mean[:, None] + scale[:, None] * eps
    likelihood = log_likelihood(layers, x, z).double()
    z64, eps64 = z.double(), eps.double()
    log_prior = -0.5 * (z64 * z64).sum(2)
    log_q = -0.5 * (eps64 * eps64).sum(2) - 0.5 * log_var.double().sum(1, keepdim=True)
    return likelihood + log_prior - log_q  # the two -d/2 log(2 pi) cancel


def _encoded(model, x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        mean, log_var = model.encode(x.to(next(model.parameters()).dtype))
    return mean.to(dtype), log_var.to(dtype)


def iwae_bound(model, x: torch.Tensor, *, k: int = 1000, rows: int = 16384, seed: int = 0) -> dict:
    """The importance-weighted estimate of -log p(x) with k draws per image from the encoder's q, averaged
    over the images x ((N, 784) or (N, 1, 28, 28) in [0, 1]).

    Returns {"nats": mean -log p(x) estimate (an upper bound on -log p(x) in expectation), "stderr": its
    standard error over images, "elbo_nats": the negative ELBO from the same draws (the mean log weight:
    the K = 1 bound, so elbo_nats >= nats), "elbo_stderr", "k", "n", "seconds", "per_image": the (N,)
    -log p(x) estimates}. Draws from a seeded CPU generator, chunk by chunk of about `rows` latents
    (rows // k images): the same seed, k and rows give the same numbers. An image with a nan pixel
    gets a nan estimate (and so do the means): nothing is left out silently.
    """
    reason = likelihood_reason(model)
    if reason is not None:
        raise StudyError(f"does not apply: {reason}")
    if k < 1 or rows < 1:
        raise StudyError(f"iwae_bound needs k >= 1 and rows >= 1, got {k} and {rows}")
    start = time.perf_counter()
    layers, dtype, device = plain_layers(model.decoder, None)
    x = images(layers, x, dtype, device)
    generator = torch.Generator().manual_seed(seed)
    per_chunk = max(1, rows // k)
    bound, mean_weight = [], []
    with torch.no_grad():
        for xc in x.split(per_chunk):
            mean, log_var = _encoded(model, xc, dtype)
            eps = torch.randn((len(xc), k, mean.shape[1]), generator=generator, dtype=dtype).to(device)
            w = log_weights(layers, xc, mean, log_var, eps)
            bound.append(torch.logsumexp(w, 1) - math.log(k))
            mean_weight.append(w.mean(1))
    nll, nelbo = -torch.cat(bound).cpu(), -torch.cat(mean_weight).cpu()
    n = len(nll)

    def stderr(values):
        return float(values.std() / math.sqrt(n)) if n > 1 else math.nan

    return {"nats": float(nll.mean()), "stderr": stderr(nll), "elbo_nats": float(nelbo.mean()),
            "elbo_stderr": stderr(nelbo), "k": k, "n": n, "seconds": time.perf_counter() - start, "per_image": nll}
