"""The original study's models (its VAE `Model`, its last commit's `DeterministicModel`), built from the params'
layer lists (an allow-list: the original looked any name up in torch.nn), with the original state-dict keys.
Both have `.decoder` (the nn.Sequential the study inverts), `.latent_dim`, `decode(z)`, `encode(x)`,
`latent(x, g)` -> (z, mean, log_var) and `forward(x, g)` -> (image, mean, log_var).
"""
from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ..constants import IMAGE_SIDE, IMAGE_SIZE
from ..errors import ParamsError
from .config import Architecture, Config, LayerSpec, thaw
from .table import KINDS

# The decoder's invertible kinds (the table), and layers an encoder may use besides.
_ALLOWED_LAYERS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (
    *KINDS, nn.ReLU, nn.GELU, nn.SiLU, nn.Softplus, nn.Dropout, nn.BatchNorm1d, nn.LayerNorm)}


def _build_layer(spec: LayerSpec, where: str) -> nn.Module:
    if spec.name not in _ALLOWED_LAYERS:
        raise ParamsError(f"{where}: unknown layer {spec.name!r}; allowed: {', '.join(sorted(_ALLOWED_LAYERS))}")
    args, kwargs = thaw(spec.args), thaw(spec.kwargs)
    try:
        return _ALLOWED_LAYERS[spec.name](*args, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ParamsError(f"{where}.{spec.name}: cannot build it with args={args} {kwargs}: {exc}") from None


def build_sequential(specs, where: str) -> nn.Sequential:
    return nn.Sequential(*(_build_layer(s, f"{where}[{i}]") for i, s in enumerate(specs)))


def _passes(stack: nn.Sequential, h: torch.Tensor, where: str) -> torch.Tensor:
    """h through the stack layer by layer, naming the layer that cannot take what arrives."""
    for i, layer in enumerate(stack):
        try:
            h = layer(h)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ParamsError(f"{where}[{i}].{type(layer).__name__}: cannot take its input of shape "
                              f"{tuple(h.shape)}: {first}") from None
    if h.dim() != 2:
        raise ParamsError(f"{where}: gives shape {tuple(h.shape)} per batch; a fully connected model passes (N, features)")
    return h


def check_architecture(arch: Architecture, where: str = "model.architecture") -> int:
    """Build every stack and pass two images through it (every layer allowed, buildable, taking what arrives; the
    decoder ending in an image); returns the latent size. Its draws from torch's global generator come before the
    model's own weights, as they always have, so a seed gives the weights it always gave."""
    built = {part: build_sequential(specs, f"{where}.{part}").eval() for part, specs in arch.parts().items()}
    with torch.no_grad():
        hidden = _passes(built["encoder.conv"], torch.zeros(2, IMAGE_SIZE), f"{where}.encoder.conv")
        z = hidden
        if arch.variational:
            z = _passes(built["encoder.mean"], hidden, f"{where}.encoder.mean")
            var = _passes(built["encoder.log_var"], hidden, f"{where}.encoder.log_var")
            if var.shape != z.shape:
                raise ParamsError(f"{where}.encoder.log_var: gives {var.shape[1]} latent dims but encoder.mean "
                                  f"gives {z.shape[1]}")
        out = _passes(built["decoder"], z, f"{where}.decoder")
    if out.shape[1] != IMAGE_SIZE:
        raise ParamsError(f"{where}.decoder: ends with {out.shape[1]} features but an MNIST image has {IMAGE_SIZE}")
    return z.shape[1]


class _Decoding(nn.Module):
    STACKS: dict[str, str]  # the params' part -> the original's attribute name, so its checkpoints load

    def __init__(self, architecture: Architecture):
        super().__init__()
        self.latent_dim = check_architecture(architecture)  # before the weights are drawn (see there)
        for part, specs in architecture.parts().items():  # the original's order: a seed gives its weights
            setattr(self, self.STACKS[part], build_sequential(specs, f"model.architecture.{part}"))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, d) -> images (N, 1, 28, 28)."""
        return self.decoder(z).reshape(z.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE)

    def decode_traced(self, z: torch.Tensor):
        """decode(z), and (layer, its input) for every layer whose inverse amplifies float32 rounding somewhere
        (table: amplifies): what train.preactivation_penalty bounds."""
        h, traced = z, []
        for layer in self.decoder:
            kind = KINDS.get(type(layer))
            if kind is not None and kind.amplifies is not None:
                traced.append((layer, h))
            h = layer(h)
        return h.reshape(z.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE), traced

    def forward(self, x, generator: torch.Generator | None = None):
        z, mean, log_var = self.latent(x, generator)
        return self.decode(z), mean, log_var


class VAE(_Decoding):
    """The original `Model`; `encode(x)` gives (mean, log_var)."""

    variational = True
    STACKS = {"encoder.conv": "encoder_conv", "encoder.mean": "encoder_mean", "encoder.log_var": "encoder_log_var",
              "decoder": "decoder"}

    def encode(self, x: torch.Tensor):
        h = self.encoder_conv(x.reshape(x.shape[0], -1))
        return self.encoder_mean(h), self.encoder_log_var(h)

    def latent(self, x, generator: torch.Generator | None = None):
        """z drawn by reparameterization."""
        mean, log_var = self.encode(x)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * noise, mean, log_var


class Autoencoder(_Decoding):
    """The original's last commit's; `encode(x)` gives (z, None), so a VAE's `encode(x)[0]` works unchanged."""

    variational = False
    STACKS = {"encoder.conv": "encoder", "decoder": "decoder"}

    def encode(self, x: torch.Tensor):
        return self.encoder(x.reshape(x.shape[0], -1)), None

    def latent(self, x, generator: torch.Generator | None = None):
        z = self.encode(x)[0]
        return z, z, None


def build_model(config: Config) -> VAE | Autoencoder:
    """A VAE, or an Autoencoder when the encoder has no heads; its decoder constrained where the params say so."""
    architecture = config.model.architecture
    model = (VAE if architecture.variational else Autoencoder)(architecture)
    if config.model.decoder_constraint is not None:
        _constrain_decoder(model.decoder, config.model.decoder_constraint.cond_max, config.model.decoder_constraint.rotate)
    return model


def _orthonormal(a: torch.Tensor) -> torch.Tensor:
    q, r = torch.linalg.qr(a)
    return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)


class BoundedSemiOrthogonal(nn.Module):
    """A free matrix A (out x in) and, rotated, B (in x in, from I) -> W = Q diag(d) V^T with Q, V the
    orthonormal factors of A and B and d_i = m exp(h tanh(log(n_i / m) / h)) (n_i: A's column norms, m their
    geometric mean, h = log(cond_max) / 2): W's singular values are exactly d, so cond(W) < cond_max whatever
    the optimizer does. The scales follow A's norms, so they grow under Adam as fast as a plain weight's."""

    def __init__(self, cond_max: float, in_features: int | None = None):
        super().__init__()
        self.half_log_cond = 0.5 * math.log(cond_max)
        self.rotation = None if in_features is None else nn.Parameter(torch.eye(in_features))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        log_n = a.norm(dim=0).log()
        m, h = log_n.mean(), self.half_log_cond
        w = _orthonormal(a) * (m.exp() if h == 0 else (m + h * torch.tanh((log_n - m) / h)).exp())
        return w if self.rotation is None else w @ _orthonormal(self.rotation).T


def _constrain_decoder(decoder: nn.Sequential, cond_max: float, rotate: bool = True) -> nn.Sequential:
    """Parametrize every Linear weight of `decoder` in place; the initial W is the layer's own (no random number is
    drawn), biases stay free."""
    for layer in decoder:
        if isinstance(layer, nn.Linear):
            constraint = BoundedSemiOrthogonal(float(cond_max), layer.in_features if rotate else None)
            parametrize.register_parametrization(layer, "weight", constraint)
    return decoder


def plain_decoder(decoder: nn.Sequential) -> nn.Sequential:
    """A new decoder of plain layers holding the parametrized one's current weights, what inversions compute with:
    a float64 copy of a parametrized decoder would recompute W in float64, another decoder than the one that made
    the images. Not remove_parametrizations on a deepcopy: the copy shares the generated class."""
    layers = []
    for layer in decoder:
        if isinstance(layer, nn.Linear) and parametrize.is_parametrized(layer):
            plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                              device=layer.weight.device, dtype=layer.weight.dtype)
            with torch.no_grad():
                plain.weight.copy_(layer.weight)
                if layer.bias is not None:
                    plain.bias.copy_(layer.bias)
            layers.append(plain)
        else:
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available() and mps.is_built())


def resolve_device(name: str, say=None) -> torch.device:
    """The device the params ask for (auto: CUDA, else MPS, else CPU); one missing here falls back to the CPU,
    said by say(line) (default: a warning)."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "mps" and not _mps_available()):
        line = f"device {name!r} requested but it is not available here; using the CPU"
        say(f"note: {line}") if say else warnings.warn(line, stacklevel=2)
        return torch.device("cpu")
    return torch.device(name)
