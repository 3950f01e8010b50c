"""-log p(x) of the test images by the importance-weighted bound (Burda et al. 2016), for notebook 02.

With K draws from the encoder's q(z|x), log p(x) >= E[logsumexp_k (log p(x|z_k) + log p(z_k) - log q(z_k|x)) - log K],
which tightens monotonically in K towards log p(x) (K = 1 is the ELBO, loose by q's KL to the true posterior).
p(x|z) is the decoder's Bernoulli likelihood (the study's convention for grey levels), p(z) = N(0, I).
K x N decoder passes (10^7 for the test set at K = 1000): float32 matmuls over chunks of about `rows`
latents to bound memory; only the sums over latents and draws are float64.
"""
from __future__ import annotations

import math
import time

import torch

from ..errors import StudyError
from ..inversion.plain import images, plain_layers
from ..inversion.posterior import log_likelihood, posterior_reason
from ..progress import progress


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


def iwae_bound(model, x: torch.Tensor, *, k: int = 1000, rows: int = 16384, seed: int = 0) -> dict:
    """The importance-weighted estimate of -log p(x), k draws per image, over the images x in [0, 1].

    {"nats", "stderr" (over images), "elbo_nats" (the mean log weight, K = 1: >= nats), "elbo_stderr", "k",
    "n", "seconds", "per_image"}. Seeded CPU draws, chunk by chunk of rows // k images: the same seed, k and
    rows give the same numbers. A nan pixel gives a nan estimate, and nan means: nothing is left out silently.
    """
    reason = posterior_reason(model)
    if reason is not None:
        raise StudyError(f"does not apply: {reason}")
    if k < 1 or rows < 1:
        raise StudyError(f"iwae_bound needs k >= 1 and rows >= 1, got {k} and {rows}")
    start = time.perf_counter()
    layers, dtype, device = plain_layers(model.decoder, None)
    x = images(layers, x, dtype, device)
    generator = torch.Generator().manual_seed(seed)
    bound, mean_weight = [], []
    chunks = x.split(max(1, rows // k))
    with torch.no_grad():
        for xc in progress(chunks, total=len(chunks), desc=f"IWAE bound, K = {k}"):
            mean, log_var = model.encode(xc.to(next(model.parameters()).dtype))
            mean, log_var = mean.to(dtype), log_var.to(dtype)
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
