"""The original study's VAE, built from the config, with the original state-dict keys."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..constants import IMAGE_SIDE
from .config import ArchitectureConfig, Config
from .layers import build_sequential, check_architecture


class VAE(nn.Module):
    """Fully connected VAE. Attribute names match the original `Model` so checkpoints load."""

    def __init__(self, architecture: ArchitectureConfig, where: str = "model.architecture"):
        super().__init__()
        # Checked first (ParamsError naming the layer), and before the weights below are drawn:
        # the check draws too, and every seed's weights have always come after it.
        self.latent_dim = check_architecture(architecture, where)
        enc = architecture.encoder
        self.encoder_conv = build_sequential(enc.conv, f"{where}.encoder.conv")
        self.encoder_mean = build_sequential(enc.mean, f"{where}.encoder.mean")
        self.encoder_log_var = build_sequential(enc.log_var, f"{where}.encoder.log_var")
        self.decoder = build_sequential(architecture.decoder, f"{where}.decoder")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_conv(x.reshape(x.shape[0], -1))
        return self.encoder_mean(h), self.encoder_log_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, d) -> images (N, 1, 28, 28)."""
        return self.decoder(z).reshape(z.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE)

    @staticmethod
    def sample(mean, log_var, generator: torch.Generator | None = None):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * noise

    def forward(self, x, generator: torch.Generator | None = None):
        mean, log_var = self.encode(x)
        return self.decode(self.sample(mean, log_var, generator)), mean, log_var


def build_model(config: Config) -> VAE:
    """The config's VAE; a ParamsError names the layer or key if the architecture is refused."""
    return VAE(config.model.architecture)
