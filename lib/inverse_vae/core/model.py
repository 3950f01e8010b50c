"""The original study's models, built from the config, with the original state-dict keys.

Two kinds, as the original's two model classes:

* :class:`VAE` (the original `Model`): encoder trunk `encoder_conv`, heads `encoder_mean` and
  `encoder_log_var`, z sampled by reparameterization; `encode(x)` returns `(mean, log_var)`.
* :class:`Autoencoder` (the original's last commit, `DeterministicModel`): `encoder` gives z
  itself, no noise, no heads; `encode(x)` returns `(z, None)`, so code written for the VAE's
  `encode(x)[0]` (the latent it would decode) works unchanged, and `None` says there is no variance.

Both have `.decoder` (an nn.Sequential, what the study inverts), `.latent_dim`, `decode(z)`,
`latent(x, generator)` returning `(z, mean, log_var)` (`(z, z, None)` for the autoencoder), and
`forward(x, generator)` returning `(image, mean, log_var)`: `(image, z, None)` for the autoencoder.
`decode_traced(z)` also returns each Tanh and Sigmoid layer of the decoder with its input, which
train.preactivation_penalty bounds.
`variational` tells them apart (the config's `model.architecture.variational`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..constants import IMAGE_SIDE
from .config import ArchitectureConfig, Config
from .layers import build_sequential, check_architecture

# The activations whose inverses (atanh, logit) amplify float32 rounding near saturation.
BOUNDED_ACTIVATIONS = (nn.Tanh, nn.Sigmoid)


class _Decoding(nn.Module):
    """What both models share: the checked architecture's latent size and the decoder."""

    def __init__(self, architecture: ArchitectureConfig, where: str):
        super().__init__()
        # Checked first (ParamsError naming the layer), and before the weights are drawn: the check
        # draws too, and every seed's weights have always come after it.
        self.latent_dim = check_architecture(architecture, where)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, d) -> images (N, 1, 28, 28)."""
        return self.decoder(z).reshape(z.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE)

    def decode_traced(self, z: torch.Tensor) -> tuple[torch.Tensor, list[tuple[nn.Module, torch.Tensor]]]:
        """decode(z) layer by layer (the same arithmetic as nn.Sequential's), and (layer, its input) for
        every Tanh and Sigmoid of the decoder: the pre-activations the closed-form inverse must undo."""
        h, preactivations = z, []
        for layer in self.decoder:
            if isinstance(layer, BOUNDED_ACTIVATIONS):
                preactivations.append((layer, h))
            h = layer(h)
        return h.reshape(z.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE), preactivations

    def forward(self, x, generator: torch.Generator | None = None):
        z, mean, log_var = self.latent(x, generator)
        return self.decode(z), mean, log_var


class VAE(_Decoding):
    """Fully connected VAE. Attribute names match the original `Model` so checkpoints load."""

    variational = True

    def __init__(self, architecture: ArchitectureConfig, where: str = "model.architecture"):
        super().__init__(architecture, where)
        enc = architecture.encoder
        self.encoder_conv = build_sequential(enc.conv, f"{where}.encoder.conv")
        self.encoder_mean = build_sequential(enc.mean, f"{where}.encoder.mean")
        self.encoder_log_var = build_sequential(enc.log_var, f"{where}.encoder.log_var")
        self.decoder = build_sequential(architecture.decoder, f"{where}.decoder")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_conv(x.reshape(x.shape[0], -1))
        return self.encoder_mean(h), self.encoder_log_var(h)

    @staticmethod
    def sample(mean, log_var, generator: torch.Generator | None = None):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * noise

    def latent(self, x, generator: torch.Generator | None = None):
        """(z, mean, log_var): z sampled by reparameterization, what forward decodes."""
        mean, log_var = self.encode(x)
        return self.sample(mean, log_var, generator), mean, log_var


class Autoencoder(_Decoding):
    """The deterministic autoencoder of the original's last commit (`DeterministicModel`).

    Attribute names match it (`encoder`, `decoder`), so its checkpoints load. No noise: the same
    image always gives the same z, and training needs no random numbers (`generator` is ignored).
    """

    variational = False

    def __init__(self, architecture: ArchitectureConfig, where: str = "model.architecture"):
        super().__init__(architecture, where)
        self.encoder = build_sequential(architecture.encoder.conv, f"{where}.encoder.conv")
        self.decoder = build_sequential(architecture.decoder, f"{where}.decoder")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(z, None): the latent, and no log-variance (the VAE's encode gives (mean, log_var))."""
        return self.encoder(x.reshape(x.shape[0], -1)), None

    def latent(self, x, generator: torch.Generator | None = None):
        """(z, z, None): the latent, given twice as VAE.latent gives (z, mean, log_var)."""
        z, _ = self.encode(x)
        return z, z, None


def build_model(config: Config) -> VAE | Autoencoder:
    """The config's model (a VAE, or an Autoencoder when the encoder has no mean/log_var heads);
    a ParamsError names the layer or key if the architecture is refused."""
    architecture = config.model.architecture
    return (VAE if architecture.variational else Autoencoder)(architecture)
