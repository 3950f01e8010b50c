"""Small seeded decoders for unit tests: 4 -> 16 -> 32 -> out, Tanh, Tanh, Sigmoid, bias-free."""
import torch
from torch import nn


def small_decoder(scale: float = 1.0, seed: int = 0, out: int = 50) -> nn.Sequential:
    """Every weight multiplied by `scale` (large: saturating units)."""
    torch.manual_seed(seed)
    dec = nn.Sequential(nn.Linear(4, 16, bias=False), nn.Tanh(), nn.Linear(16, 32, bias=False), nn.Tanh(),
                        nn.Linear(32, out, bias=False), nn.Sigmoid())
    with torch.no_grad():
        for layer in dec[::2]:
            layer.weight.mul_(scale)
    return dec
