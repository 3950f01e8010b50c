"""The original study's VAE, built from params, with the original state-dict keys."""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import build_sequential, check_architecture


class VAE(nn.Module):
    """Fully connected VAE. Attribute names match the original `Model` so checkpoints load."""

    def __init__(self, architecture: dict):
        super().__init__()
        self.latent_dim = check_architecture(architecture)
        enc = architecture["encoder"]
        self.encoder_conv = build_sequential(enc["conv"], "encoder.conv")
        self.encoder_mean = build_sequential(enc["mean"], "encoder.mean")
        self.encoder_log_var = build_sequential(enc["log_var"], "encoder.log_var")
        self.decoder = build_sequential(architecture["decoder"], "decoder")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_conv(x.reshape(x.shape[0], -1))
        return self.encoder_mean(h), self.encoder_log_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, d) -> images (N, 1, 28, 28)."""
        return self.decoder(z).reshape(z.shape[0], 1, 28, 28)

    @staticmethod
    def sample(mean, log_var, generator: torch.Generator | None = None):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * noise

    def forward(self, x, generator: torch.Generator | None = None):
        mean, log_var = self.encode(x)
        return self.decode(self.sample(mean, log_var, generator)), mean, log_var


def build_model(params: dict) -> VAE:
    return VAE(params["model"]["architecture"])
