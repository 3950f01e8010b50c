"""Which sections of notebooks 02-05 apply to a run's model: `applies = of(model)`, then `if applies("prior"):`
runs a section, or prints "does not apply: <why>" once and writes no metric for it.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

WHY_NOT = {
    "kl": "the autoencoder has no KL term (no negative ELBO)",
    "prior": "z ~ N(0, I) is not the autoencoder's latent distribution (it was trained without a prior)",
    "bce": "the decoder has no Sigmoid output, so BCE is undefined (MSE and PSNR are reported)",
    "sigmoid": "the decoder has no Sigmoid, so logit(0) = -inf never arises",
    "tanh": "the decoder has no Tanh: no atanh domain, nothing to box or saturate there",
    "clamp": "the decoder has no Sigmoid or Tanh, so its inverse needs no clamp",
}


@dataclass(frozen=True)
class Applies:
    variational: bool  # a VAE: a prior and a KL term
    bce: bool  # the decoder ends in a Sigmoid: outputs in [0, 1] like the images
    sigmoid: bool
    tanh: bool
    decoder: str  # its layers, for the reader

    def holds(self, section: str) -> bool:
        return {"kl": self.variational, "prior": self.variational, "bce": self.bce, "sigmoid": self.sigmoid,
                "tanh": self.tanh, "clamp": self.sigmoid or self.tanh}[section]

    def __call__(self, section: str) -> bool:
        if self.holds(section):
            return True
        print(f"does not apply: {WHY_NOT[section]}")
        return False

    def describe(self) -> str:
        kind = "VAE" if self.variational else "deterministic autoencoder"
        skipped = [WHY_NOT[s] for s in WHY_NOT if not self.holds(s)]
        return f"This run's model is a {kind}; its decoder is {self.decoder}." + (
            " Sections that do not apply: " + "; ".join(skipped) + "." if skipped else "")


def has(decoder: nn.Sequential, *kinds: type[nn.Module]) -> bool:
    return any(isinstance(layer, kinds) for layer in decoder)


def of(model) -> Applies:
    d = model.decoder
    return Applies(bool(model.variational), isinstance(d[-1], nn.Sigmoid), has(d, nn.Sigmoid), has(d, nn.Tanh),
                   " -> ".join(type(layer).__name__ for layer in d))
