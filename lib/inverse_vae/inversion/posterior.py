"""The VAE's own answer to "which z made this image": its posterior p(z | x) (Bernoulli likelihood, prior
N(0, I)), not a pixel fit whose error keeps falling as ||z|| runs off. MAP, its mode, is a named method
(trust-region Newton on negative_log_joint); SVI (Cremer et al. 2018) fits a Gaussian q(z|x) per image, and
the ELBO it gains over the encoder's q is the amortization gap. Neither applies to the autoencoder."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.table import ends_in_bernoulli, kind_names
from ..errors import StudyError
from .plain import bce, forward, images, nan_where_unusable, plain_layers, require_bernoulli
from .timing import MethodResult, record_bce, timed

__all__ = ["amortization_gap", "encoded", "log_likelihood", "negative_log_joint", "posterior_reason", "svi"]

def posterior_reason(model) -> str | None:
    """None when MAP, SVI and the likelihood bounds apply to the model, else the one-line reason (as
    study/applies.py's reasons: a notebook passes it to applies.skipped)."""
    if not getattr(model, "variational", True):
        return "the autoencoder has no prior and no posterior (it was trained without a KL term), so MAP, SVI " \
               "and log p(x) do not apply"
    if not ends_in_bernoulli(model.decoder):
        return f"the decoder has no {kind_names('bernoulli')}, so there is no Bernoulli likelihood p(x|z) (BCE is undefined)"
    return None


def _require(model) -> None:
    """StudyError (one line) unless the model is a VAE with a Bernoulli likelihood."""
    if not hasattr(model, "encode") or not hasattr(model, "decoder"):
        raise StudyError(f"the posterior needs the VAE model (with encode and decoder), got {type(model).__name__}")
    reason = posterior_reason(model)
    if reason is not None:
        raise StudyError(f"does not apply: {reason}")


def negative_log_joint(decoder: nn.Sequential, z: torch.Tensor, x: torch.Tensor, *, dtype=None,
                       constant: bool = False) -> torch.Tensor:
    """Per image -log p(x|z) - log p(z) = BCE(D(z), x) (from the logits) + ||z||^2 / 2, what MAP minimizes;
    with constant, plus d/2 log(2 pi), the prior's normalizer."""
    layers, dtype, device = plain_layers(decoder, dtype)
    x = images(layers, x, dtype, device)
    z = z.to(dtype=dtype, device=device)
    with torch.no_grad():
        value = bce(layers, z, x) + 0.5 * (z * z).sum(1)
    return value + 0.5 * z.shape[1] * math.log(2 * math.pi) if constant else value


def log_likelihood(layers, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for K latents per image, x (n, D), z (n, K, d) -> (n, K), as x . a - sum softplus(a) at the
    logits a: one batched product, so softplus is the only elementwise pass over the n K D logits."""
    n, k, d = z.shape
    logits = forward(layers[:-1], z.reshape(n * k, d)).reshape(n, k, -1)
    return torch.bmm(logits, x[:, :, None].to(logits.dtype))[:, :, 0] - F.softplus(logits).sum(2)


def _kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per image, in closed form."""
    return 0.5 * (mean * mean + log_var.exp() - log_var - 1).sum(1)


def _noise(generator: torch.Generator, shape, dtype, device) -> torch.Tensor:
    """N(0, 1) draws from a seeded CPU generator (the same on every device), in dtype on device."""
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def _elbo(decoder: nn.Sequential, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, *,
          samples: int = 1000, seed: int = 0, rows: int = 16384, dtype=None) -> torch.Tensor:
    """Per image ELBO(q) = E_q[log p(x|z)] - KL(q || N(0, I)) in nats, q = N(mean, diag(exp(log_var))), by
    `samples` seeded draws (two q's compared with one seed share their noise), in chunks of about `rows`."""
    layers, dtype, device = plain_layers(decoder, dtype)
    x = images(layers, x, dtype, device)
    require_bernoulli(layers, "the ELBO")
    mean, log_var = mean.to(dtype=dtype, device=device), log_var.to(dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(seed)
    per_chunk = max(1, rows // samples)
    expected = []
    with torch.no_grad():
        for xc, mc, vc in zip(x.split(per_chunk), mean.split(per_chunk), log_var.split(per_chunk)):
            eps = _noise(generator, (len(xc), samples, mc.shape[1]), dtype, device)
            z = mc[:, None] + (0.5 * vc).exp()[:, None] * eps
            expected.append(log_likelihood(layers, xc, z).double().mean(1))
    return torch.cat(expected) - _kl(mean.double(), log_var.double())


def _negative_elbo(layers, x, mean, log_var, eps, prior_weight):
    """Per image -(mean over the K draws of log p(x|z_k)) + prior_weight KL: SVI's loss, eps (n, K, d)."""
    z = mean[:, None] + (0.5 * log_var).exp()[:, None] * eps
    return -log_likelihood(layers, x, z).mean(1) + prior_weight * _kl(mean, log_var)


def encoded(model, x, dtype):
    """The encoder's (mean, log_var) of x in dtype, without touching the model's parameters."""
    net = model if next(model.parameters()).dtype == dtype else copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        mean, log_var = net.encode(x)
    return mean, log_var


def svi(model, x: torch.Tensor, *, steps: int = 500, samples: int = 8, lr: float = 0.02, seed: int = 0,
        prior_weight: float = 1.0, record_every: int = 25, dtype: torch.dtype | None = None) -> MethodResult:
    """q(z|x) per image from the encoder's, by Adam on the summed -ELBO (exact per image: Adam is elementwise),
    `samples` seeded draws per step, lr decayed linearly to 0 so the last iterate does not jitter with the
    draws. prior_weight scales the KL (1: the model's ELBO). z: the means; info: q's and the encoder's."""
    if steps < 1 or samples < 1 or not lr > 0 or prior_weight < 0 or record_every < 1:
        raise StudyError(f"svi needs steps >= 1, samples >= 1, lr > 0, prior_weight >= 0, record_every >= 1; "
                         f"got {steps}, {samples}, {lr}, {prior_weight}, {record_every}")
    layers, dtype, device = plain_layers(model.decoder, dtype)
    x = images(layers, x, dtype, device)  # bad input is refused first, whatever the model
    _require(model)

    def body(rec):
        mean0, log_var0 = encoded(model, x, dtype)
        mean, log_var = mean0.clone().requires_grad_(True), log_var0.clone().requires_grad_(True)
        opt = torch.optim.Adam([mean, log_var], lr=lr)
        generator = torch.Generator().manual_seed(seed)
        for step in range(steps):
            eps = _noise(generator, (x.shape[0], samples, mean.shape[1]), dtype, device)
            loss = _negative_elbo(layers, x, mean, log_var, eps, prior_weight)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            if step % record_every == 0:
                record_bce(rec, step, layers, mean, x, loss)
            opt.param_groups[0]["lr"] = lr * (1 - step / steps)
            opt.step()
        final = loss.detach()
        record_bce(rec, steps, layers, mean, x, final)
        info = {"method": "svi", "objective": final, "mean": mean.detach(), "log_var": log_var.detach(),
                "encoder_mean": mean0, "encoder_log_var": log_var0, "samples": samples, "prior_weight": prior_weight}
        return mean.detach(), steps, info

    result = timed(device, body)
    result.z = nan_where_unusable(result.z, x)
    return result


def amortization_gap(model, x: torch.Tensor, result: MethodResult, *, samples: int = 1000, seed: int = 0,
                     rows: int = 16384) -> dict:
    """The ELBO of the encoder's q and of SVI's (result: svi() on these x) with the same draws, and their mean
    difference, the gap (what amortized inference loses), in nats per image; nan images left out."""
    _require(model)
    info = result.info
    if "encoder_mean" not in info or len(info["mean"]) != len(x):
        raise StudyError("amortization_gap needs svi()'s result on the same images")
    args = dict(samples=samples, seed=seed, rows=rows, dtype=info["mean"].dtype)
    encoder_elbo = _elbo(model.decoder, x, info["encoder_mean"], info["encoder_log_var"], **args)
    svi_elbo = _elbo(model.decoder, x, info["mean"], info["log_var"], **args)
    keep = torch.isfinite(encoder_elbo) & torch.isfinite(svi_elbo)
    diff = (svi_elbo - encoder_elbo)[keep]
    n = int(keep.sum())
    return {"encoder_elbo": float(encoder_elbo[keep].mean()), "svi_elbo": float(svi_elbo[keep].mean()),
            "gap": float(diff.mean()), "gap_stderr": float(diff.std() / math.sqrt(n)) if n > 1 else math.nan,
            "improved": float((diff > 0).double().mean()), "n": n, "samples": samples}
