"""The original loss convention and the standard negative ELBO in nats.

Original: BCE averaged over pixels + alpha * KL averaged over batch and latent dims (an effective beta of about
alpha * 784 / d against the summed ELBO); a deterministic autoencoder, the reconstruction loss alone, averaged as
the original's nn.BCELoss() and nn.MSELoss(). What other VAE code reports is the per-image negative ELBO: BCE summed
over pixels + KL summed over latent dims.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .table import KINDS


def _kl_per_dim(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) for each latent coordinate."""
    return 0.5 * (mean.pow(2) - log_var + log_var.exp() - 1)


def _reconstruction_per_pixel(output, target, kind: str = "bceloss") -> torch.Tensor:
    """(N, 784): binary cross-entropy ('bceloss') or squared error ('mseloss') of each pixel."""
    output, target = output.reshape(output.shape[0], -1), target.reshape(target.shape[0], -1)
    if kind == "bceloss":
        return F.binary_cross_entropy(output, target, reduction="none")
    return (output - target).pow(2)


def original_loss(output, target, mean, log_var, alpha: float, kind: str = "bceloss"):
    """(loss, reconstruction, regularization) in the original study's convention; (reconstruction,
    reconstruction, None) with `log_var` None (an autoencoder: no KL term)."""
    rec = _reconstruction_per_pixel(output, target, kind).mean()
    if log_var is None:
        return rec, rec, None
    reg = _kl_per_dim(mean, log_var).mean()
    return rec + alpha * reg, rec, reg


_Traced = list[tuple[nn.Module, torch.Tensor]]  # (activation layer, its input a), as model.decode_traced gives


def _excess(traced: _Traced, bound: float) -> torch.Tensor:
    return torch.cat([KINDS[type(layer)].amplifying_side(a).reshape(-1) for layer, a in traced]) - bound


def preactivation_penalty(traced: _Traced, bound: float) -> torch.Tensor:
    """mean(relu(side - bound)^2) over every unit, side = its kind's amplifying_side: 0 within the bound, then growing
    quadratically, so its gradient pulls the input back towards the bound in proportion to the excess."""
    return F.relu(_excess(traced, bound)).pow(2).mean()


def past_bound_share(traced: _Traced, bound: float) -> torch.Tensor:
    """The share of units past the bound (0-dim): how much of the decoder the penalty still acts on."""
    return (_excess(traced, bound) > 0).float().mean()


def negative_elbo_nats(output, target, mean, log_var) -> dict[str, torch.Tensor]:
    """Per-image negative ELBO (one-sample estimate) with its two parts, each of shape (N,)."""
    bce = _reconstruction_per_pixel(output, target, "bceloss").sum(dim=1)
    kl = _kl_per_dim(mean, log_var).sum(dim=1)
    return {"nelbo": bce + kl, "bce": bce, "kl": kl}
