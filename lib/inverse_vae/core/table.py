"""The one table of decoder layers the study can invert, and of those it refuses: the allow-list, the chain,
the solvers, training's penalty and the study's analyses all read what a layer is here (its mathematics, where it
saturates, its clamp, whether it is a Bernoulli head), so a new kind is one entry in KINDS and no other module names
one. Invertibility is decided in the dtype the decoder computes in (a leaky slope of 1e-46 is a ReLU in float32)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import StudyError

__all__ = ["KINDS", "LayerKind", "Plain", "box_bounds", "ends_in_bernoulli", "has_kind", "kind_names", "kind_of",
           "plain_layer"]


@dataclass(frozen=True)
class Plain:
    """A decoder layer as plain tensors in one dtype, detached: what solvers and inverses compute with."""

    kind: LayerKind
    weight: Tensor | None = None  # Linear only, (out, in)
    bias: Tensor | None = None  # Linear with bias only
    slope: float = 0.0  # LeakyReLU's negative slope

    def forward(self, a: Tensor) -> Tensor:
        return self.kind.forward(self, a)


def _same(p: Plain, t: Tensor) -> Tensor:
    return t


@dataclass(frozen=True)
class LayerKind:
    """How the study computes with one layer type, on the layer as a Plain: forward, inverse, derivative f'(a)
    (None: 1), inverse_slope (how much an error in y is amplified), output_range (None: unbounded; its ends are
    where the clamp keeps a margin); refuse(layer, dtype) says why an instance cannot be inverted (None: it can).
    What the study says of it: inverse_name (as the text writes the inverse), ends (each output reached exactly at a
    finite input in floating point, with the sign of that input; 0: both, an odd kind), amplifies (the sign of the
    inputs towards which its float32 inverse amplifies rounding; 0: both; None: nowhere), bernoulli (as the last
    layer its outputs are pixel probabilities, its input the logits)."""

    name: str
    forward: Callable[[Plain, Tensor], Tensor] = _same
    inverse: Callable[[Plain, Tensor], Tensor] = _same
    derivative: Callable[[Plain, Tensor, Tensor], Tensor] | None = None
    inverse_slope: Callable[[Plain, Tensor], Tensor] | None = None
    output_range: tuple[float, float] | None = None
    slope: Callable[[nn.Module], float] = lambda layer: 0.0
    refuse: Callable[[nn.Module, torch.dtype], str | None] = lambda layer, dtype: None
    is_linear: bool = False
    inverse_name: str = ""
    ends: tuple[tuple[float, int], ...] = ()
    amplifies: int | None = None
    bernoulli: bool = False

    @property
    def is_identity(self) -> bool:
        return self.forward is _same

    @property
    def two_sided(self) -> bool:
        """Bounded at both ends, as the original's clamp [low + eps, high - eps] assumes."""
        return self.output_range is not None and all(map(math.isfinite, self.output_range))

    @property
    def boxed(self) -> bool:
        """A hidden kind whose inverse's domain is an interval: the study boxes the values it receives."""
        return self.two_sided and not self.bernoulli

    def amplifying_side(self, a: Tensor) -> Tensor:
        """How far input a lies towards where the float32 inverse amplifies rounding (training's penalty bounds it)."""
        return a.abs() if self.amplifies == 0 else a if self.amplifies == 1 else -a

    def check_eps(self, eps: float | None) -> float:
        """The clamp margin as a float (None: 0, no clamp), refused outside [0, half the range)."""
        eps = 0.0 if eps is None else float(eps)
        low, high = self.output_range
        if not 0.0 <= eps < (high - low) / 2:
            raise StudyError(f"{self.name} inverse eps must be in [0, {(high - low) / 2:g}), got {eps!r}")
        return eps

    def clamp_bounds(self, eps: float, dtype: torch.dtype) -> tuple[float, float]:
        """[low + eps, high - eps] computed in dtype arithmetic (not rounded from float64): the values a
        tensor of that dtype can actually hold next to the range's ends."""
        low, high = self.output_range
        eps_t = torch.tensor(eps, dtype=dtype)
        return float(torch.tensor(low, dtype=dtype) + eps_t), float(torch.tensor(high, dtype=dtype) - eps_t)

    def clamp(self, y: Tensor, eps: float) -> Tensor:
        return y if eps == 0.0 else y.clamp(*self.clamp_bounds(eps, y.dtype))

    def saturated(self, y: Tensor) -> Tensor:
        """Per sample: some unit at (or beyond) the range's ends, where information is lost."""
        low, high = self.output_range
        return ((y <= low) | (y >= high)).flatten(1).any(1)

    def clamped(self, y: Tensor, eps: float) -> Tensor:
        """Per sample: some unit lies where the clamp changes it."""
        if eps == 0.0:
            return torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
        lo, hi = self.clamp_bounds(eps, y.dtype)
        return ((y < lo) | (y > hi)).flatten(1).any(1)

    def box(self, margin: float, dtype: torch.dtype) -> tuple[float, float]:
        """The output range shrunk by margin on both sides (the solvers' box), rounded from float64 to dtype."""
        low, high = self.output_range
        return box_bounds((low + margin, high - margin), dtype)


def box_bounds(bound: tuple[float, float] | None, dtype: torch.dtype) -> tuple[float, float] | None:
    """(low, high) as the values dtype holds (None: unbounded)."""
    return None if bound is None else tuple(float(torch.tensor(v, dtype=dtype)) for v in bound)


def _leaky_refuse(layer: nn.Module, dtype: torch.dtype) -> str | None:
    """Injective in dtype's arithmetic: a slope > 0 that dtype holds as a normal number (a subnormal one loses
    precision in every product, or flushes to 0), so that products and the inverse's division stay distinct."""
    slope = layer.negative_slope
    if not slope > 0:
        return f"negative_slope {slope!r} is not > 0, so it is not injective"
    if not math.isfinite(slope):
        return f"negative_slope {slope!r} is not a finite number"
    where = f"in {dtype}, the dtype the decoder computes in"
    held = torch.tensor(slope, dtype=dtype)
    if held == 0:
        return f"negative_slope {slope!r} rounds to 0 {where}: there the layer is a ReLU, not injective"
    if not torch.isfinite(held):
        return f"negative_slope {slope!r} overflows to inf {where}"
    if held < torch.finfo(dtype).tiny:
        return (f"negative_slope {slope!r} is subnormal {where} (smallest normal {torch.finfo(dtype).tiny:g}): "
                f"its products lose their precision or flush to 0, not injective")
    if not torch.isfinite(1 / held):  # not for IEEE dtypes once subnormals are out: 1/tiny < max
        return f"1/negative_slope overflows to inf {where}, so its inverse cannot be computed"
    return None


def _elu_refuse(layer: nn.Module, dtype: torch.dtype) -> str | None:
    # Its range and inverse are written for alpha 1; another alpha is a new entry, not a parameter.
    return None if layer.alpha == 1.0 else f"alpha {layer.alpha!r} is not 1, the only ELU this study inverts"


def _flatten_refuse(layer: nn.Module, dtype: torch.dtype) -> str | None:
    # Flatten(1, -1) leaves a 2-D (N, D) activation unchanged; other dims reshape.
    if (layer.start_dim, layer.end_dim) != (1, -1):
        return f"Flatten(start_dim={layer.start_dim}, end_dim={layer.end_dim}) is not a no-op on (N, D) input"
    return None


# Forward layer type -> how the study computes with it. One entry per supported kind.
KINDS: dict[type[nn.Module], LayerKind] = {
    nn.Linear: LayerKind("linear", forward=lambda p, a: F.linear(a, p.weight, p.bias), is_linear=True),
    # atanh multiplies an error in tanh(a) by cosh(a)^2, near +1 and -1 alike.
    nn.Tanh: LayerKind(
        "tanh", forward=lambda p, a: torch.tanh(a), output_range=(-1.0, 1.0),
        inverse=lambda p, y: torch.atanh(y),
        derivative=lambda p, a, y: 1 - y * y, inverse_slope=lambda p, y: 1 / (1 - y * y),
        inverse_name="atanh", ends=((1.0, 0),), amplifies=0),
    # logit multiplies an error by about 1 + e^a near 1; near 0 float32 keeps sigmoid's relative precision down
    # to a = -87, so dark pixels cost the inverse nothing.
    nn.Sigmoid: LayerKind(
        "sigmoid", forward=lambda p, a: torch.sigmoid(a), output_range=(0.0, 1.0),
        inverse=lambda p, y: torch.logit(y),
        derivative=lambda p, a, y: y * (1 - y), inverse_slope=lambda p, y: 1 / (y * (1 - y)),
        inverse_name="logit", ends=((1.0, 1), (0.0, -1)), amplifies=1, bernoulli=True),
    # ELU (alpha 1): a for a > 0, e^a - 1 below, so -1 is reached only in floating point (a < -17 in float32),
    # and log1p multiplies an error near -1 by e^-a: one-sided saturation.
    nn.ELU: LayerKind(
        "elu", forward=lambda p, a: F.elu(a), output_range=(-1.0, math.inf),
        inverse=lambda p, y: torch.where(y > 0, y, torch.log1p(y)),
        derivative=lambda p, a, y: torch.where(a > 0, 1.0, a.exp()).to(a.dtype),  # e^a, not y + 1: no cancellation
        inverse_slope=lambda p, y: torch.where(y > 0, 1.0, 1 / (y + 1)).to(y.dtype),
        refuse=_elu_refuse, inverse_name="log1p", ends=((-1.0, -1),), amplifies=-1),
    nn.LeakyReLU: LayerKind(
        "leaky_relu", forward=lambda p, a: F.leaky_relu(a, p.slope),
        # Divide rather than multiply by 1/slope: one rounding instead of two.
        inverse=lambda p, y: torch.where(y >= 0, y, y / p.slope),
        derivative=lambda p, a, y: torch.where(a >= 0, 1.0, p.slope).to(a.dtype),
        inverse_slope=lambda p, y: torch.where(y >= 0, 1.0, 1 / p.slope).to(y.dtype),
        slope=lambda layer: float(layer.negative_slope), refuse=_leaky_refuse),
    nn.Identity: LayerKind("identity"),
    nn.Flatten: LayerKind("identity", refuse=_flatten_refuse),
}

# Why common layers are refused; any other unknown layer gets a generic reason.
_REFUSED: dict[type[nn.Module], str] = {
    nn.ReLU: "not injective (every negative input maps to 0)",
    nn.ReLU6: "not injective (clips to [0, 6])",
    nn.Hardtanh: "not injective (clips to its range)",
    nn.Hardsigmoid: "not injective (clips to [0, 1])",
    nn.GELU: "not injective (not monotonic below 0)",
    nn.SiLU: "not injective (not monotonic below 0)",
    nn.Softplus: "invertible in principle but not supported by this study",
}


def has_kind(decoder: nn.Sequential, role: str) -> bool:
    """Whether some layer's kind has the property `role` (a LayerKind attribute: "bernoulli", "boxed", ...)."""
    return any(getattr(KINDS[type(layer)], role) for layer in decoder if type(layer) in KINDS)


def ends_in_bernoulli(decoder: nn.Sequential) -> bool:
    """The decoder's outputs are pixel probabilities (a Bernoulli likelihood, BCE): its last kind says so."""
    return has_kind(decoder[-1:], "bernoulli")


def kind_names(role: str, attribute: str = "type") -> str:
    """The kinds with property `role`, for a sentence: their layer types ("Sigmoid or Tanh"), or attribute's
    value ("inverse_name": "atanh"), sorted."""
    found = {cls.__name__ if attribute == "type" else getattr(kind, attribute)
             for cls, kind in KINDS.items() if getattr(kind, role)}
    return " or ".join(sorted(found))


def layer_tag(index: int, layer: nn.Module) -> str:
    return f"decoder layer {index} ({type(layer).__name__})"


def kind_of(index: int, layer: nn.Module, runs_in: torch.dtype | None = None) -> LayerKind:
    """The table entry of decoder layer `index`, or a StudyError naming it and the reason; runs_in: the dtype
    the decoder computes in (None: torch's default, what a decoder is built in)."""
    kind = KINDS.get(type(layer))
    if kind is None:
        reason = _REFUSED.get(type(layer), "only " + ", ".join(t.__name__ for t in KINDS) + " are supported")
        raise StudyError(f"{layer_tag(index, layer)} has no inverse: {reason}")
    reason = kind.refuse(layer, torch.get_default_dtype() if runs_in is None else runs_in)
    if reason is not None:
        raise StudyError(f"{layer_tag(index, layer)}: {reason}")
    return kind


def plain_layer(index: int, layer: nn.Module, dtype: torch.dtype, runs_in: torch.dtype | None = None) -> Plain:
    """Decoder layer `index` as a Plain in dtype (weights detached and cast: never the parameters), refused
    (kind_of) where the decoder computing in runs_in (None: dtype) cannot invert it."""
    kind = kind_of(index, layer, dtype if runs_in is None else runs_in)
    if kind.is_linear:
        bias = None if layer.bias is None else layer.bias.detach().to(dtype)
        return Plain(kind, layer.weight.detach().to(dtype), bias)
    return Plain(kind, slope=kind.slope(layer))
