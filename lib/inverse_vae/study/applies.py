"""Which sections of notebooks 02-05 apply to a run's model, and the one line that says why not.

The family of runs differs in what the study's sections assume: the autoencoder has no KL term
and no prior (z ~ N(0, I) is not its latent distribution), a decoder without a Sigmoid output is
not confined to [0, 1] (so BCE is undefined and logit(0) never arises), and a decoder without Tanh
has no atanh domain and nothing that saturates there. Each `*_reason` returns None when the section
applies, else the reason; `skipped` prints "does not apply: <reason>" and tells the notebook to
write no metric for that section (the key absent, never a placeholder).
"""
from __future__ import annotations

from torch import nn

__all__ = ["bce_reason", "clamp_reason", "describe", "has", "kl_reason", "prior_reason", "realizable_source",
           "skipped", "tanh_reason"]


def has(decoder: nn.Sequential, layer_type: type[nn.Module]) -> bool:
    return any(isinstance(layer, layer_type) for layer in decoder)


def bounded_output(decoder: nn.Sequential) -> bool:
    """True when the decoder ends in a Sigmoid: its outputs, like the images, lie in [0, 1]."""
    return isinstance(decoder[-1], nn.Sigmoid)


def kl_reason(model) -> str | None:
    return None if model.variational else "the autoencoder has no KL term (no negative ELBO)"


def prior_reason(model) -> str | None:
    return None if model.variational else \
        "z ~ N(0, I) is not the autoencoder's latent distribution (it was trained without a prior)"


def bce_reason(decoder: nn.Sequential) -> str | None:
    return None if bounded_output(decoder) else \
        "the decoder has no Sigmoid, its outputs are not confined to [0, 1], so BCE is undefined (MSE and PSNR are reported)"


def sigmoid_reason(decoder: nn.Sequential) -> str | None:
    return None if has(decoder, nn.Sigmoid) else "the decoder has no Sigmoid, so logit(0) = -inf never arises"


def tanh_reason(decoder: nn.Sequential) -> str | None:
    others = sorted({type(layer).__name__ for layer in decoder if not isinstance(layer, nn.Linear)})
    return None if has(decoder, nn.Tanh) else \
        f"the decoder has no Tanh ({', '.join(others)} only): no atanh domain, nothing to box or saturate there"


def clamp_reason(decoder: nn.Sequential) -> str | None:
    return None if has(decoder, nn.Tanh) or has(decoder, nn.Sigmoid) else \
        "the decoder has no Sigmoid or Tanh, so its inverse needs no clamp"


def skipped(reason: str | None) -> bool:
    """Print "does not apply: <reason>" and return True when there is a reason; False otherwise."""
    if reason is None:
        return False
    print(f"does not apply: {reason}")
    return True


def realizable_source(model) -> str:
    """Where the realizable latents come from: the prior for a VAE, the encoded test images for
    the autoencoder (its latents are not N(0, I))."""
    return "prior" if model.variational else "encoder_mean"


def describe(model) -> str:
    """One line naming the model and its decoder, for notebook text that must hold for every run."""
    kind = "VAE" if model.variational else "deterministic autoencoder"
    layers = " -> ".join(type(layer).__name__ for layer in model.decoder)
    return f"This run's model is a {kind}; its decoder is {layers}."
