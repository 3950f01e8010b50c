"""The decoders the unit tests invert, in one place.

small_decoder: torch's default initialization, 4 -> 16 -> 32 -> out, Tanh, Tanh, Sigmoid,
bias-free, every weight scaled (large scales saturate units). seeded_decoder: any sizes, weights
drawn N(0, 1/fan_in) from a generator of its own (so other tests' draws do not move them).
"""
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


def seeded_decoder(sizes, *, scale: float = 1.0, bias: bool = False, bias_std: float | None = None,
                   hidden=nn.Tanh, seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """Linear/hidden/.../Linear/Sigmoid through `sizes`; pre-activations of order `scale`.

    With bias, biases are N(0, bias_std^2) (drawn after each layer's weight), or 0 when bias_std is None.
    """
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out, bias=bias)
        with torch.no_grad():
            linear.weight.copy_(scale * torch.randn(fan_out, fan_in, generator=gen) / fan_in**0.5)
            if bias:
                linear.bias.copy_(bias_std * torch.randn(fan_out, generator=gen)) if bias_std else linear.bias.zero_()
        layers += [linear, nn.Sigmoid() if i == len(sizes) - 2 else hidden()]
    return nn.Sequential(*layers).to(dtype)


class FakeVAE(nn.Module):
    """encode(x) -> (mean, log_var) and a decoder (4-d latent), enough for the encoder-based methods."""

    def __init__(self, decoder, n_out: int):
        super().__init__()
        self.decoder = decoder
        self.enc = nn.Linear(n_out, 4).double()

    def encode(self, x):
        h = self.enc(x.reshape(x.shape[0], -1))
        return h, torch.zeros_like(h)


def entry_points(decoder, n_out: int) -> dict:
    """name -> call(images): the chain's invert and trace, each method function and each named method (the
    iterative ones for two steps), on a decoder with a 4-d latent."""
    from inverse_vae.inversion.chain import InverseChain
    from inverse_vae.inversion.methods import METHODS, _hybrid, closed_form, layerwise_constrained, optimize, run_method

    chain, model = InverseChain(decoder), FakeVAE(decoder, n_out)
    calls = {
        "chain.invert": lambda im: chain.invert(im),
        "chain.trace": lambda im: chain.trace(im),
        "closed_form": lambda im: closed_form(decoder, im),
        "layerwise_constrained": lambda im: layerwise_constrained(decoder, im, iters=5),
        "optimize": lambda im: optimize(decoder, im, method="lm", steps=2),
        "hybrid": lambda im: _hybrid(decoder, im, start=torch.zeros(2, 4, dtype=torch.float64), steps=2),
    }
    for name, spec in METHODS.items():
        options = {"steps": 2} if spec.function in ("optimize", "hybrid") else {}
        calls[f"run_method:{name}"] = lambda im, name=name, options=options: run_method(
            name, decoder, im, model=model, **options)
    return calls
