"""The decoder undone layer by layer: an activation by its inverse (clamped, as the original project did), a
Linear by its weight's pseudo-inverse, which recovers the input only for full column rank, so a Linear that is
not injective is refused, not solved in the least-norm sense. An InverseChain snapshots the weights."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..constants import ARITHMETICS, ORIGINAL_EPS
from ..core.table import LayerKind, Plain, kind_of, layer_tag, plain_layer
from ..errors import StudyError
from .plain import check_images

__all__ = ["DTYPES", "InverseChain", "Step", "forward_trace", "realizable"]

DTYPES = {name: getattr(torch, name) for name in ARITHMETICS}  # the study's arithmetics by name


@dataclass(frozen=True)
class Step:
    """One step of the inverse chain: it undoes decoder layer `index`."""

    index: int
    name: str  # inv{index}_{Type}
    type_name: str  # the decoder layer's class name
    kind: LayerKind
    eps: float = 0.0  # clamp margin of a bounded activation's inverse (0: no clamp)


class _TraceStep(NamedTuple):
    step: Step
    arriving: torch.Tensor  # the value reaching the step (before its clamp)
    output: torch.Tensor


def _pinv64(weight: torch.Tensor) -> torch.Tensor:
    """The float64 pseudo-inverse of a weight of full column rank (the rank check: else pinv loses the input)."""
    w = weight.detach().to(torch.float64)
    s = torch.linalg.svdvals(w)
    tol = max(w.shape) * torch.finfo(torch.float64).eps * float(s[0]) if s.numel() else 0.0
    rank = int((s > tol).sum())
    if rank < w.shape[1]:
        raise StudyError(f"rank {rank} < {w.shape[1]} inputs, so pinv cannot recover its input")
    return torch.linalg.pinv(w)


class InverseChain:
    """The inverse of one decoder. Raises StudyError for anything it cannot invert exactly."""

    def __init__(self, decoder: nn.Sequential):
        if not isinstance(decoder, nn.Sequential) or len(decoder) == 0:
            raise StudyError(f"decoder must be a non-empty nn.Sequential, got {type(decoder).__name__}")
        self.steps: list[Step] = []
        self._plain: dict[int, Plain] = {}  # activations: their parameters (dtype-free)
        self._linear: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}  # index -> (pinv64, bias)
        self.device = next((p.device for p in decoder.parameters()), torch.device("cpu"))
        runs_in = next((p.dtype for p in decoder.parameters()), torch.get_default_dtype())  # decides invertibility
        for index in reversed(range(len(decoder))):
            layer = decoder[index]
            kind = kind_of(index, layer, runs_in)
            if not kind.is_linear:
                self._plain[index] = plain_layer(index, layer, torch.float64, runs_in)
            else:
                try:
                    pinv = _pinv64(layer.weight)
                except StudyError as exc:
                    raise StudyError(f"{layer_tag(index, layer)} {layer.in_features}->{layer.out_features} "
                                     f"is not injective: {exc}") from None
                self._linear[index] = (pinv, None if layer.bias is None else layer.bias.detach().clone())
            self.steps.append(Step(index, f"inv{index}_{type(layer).__name__}", type(layer).__name__, kind))
        self.in_features = next((self._linear[s.index][0].shape[1] for s in self.steps if s.kind.is_linear), None)

    def pinv(self, index: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pinv(W), bias) of decoder layer `index` in dtype (a cast per call: microseconds beside the product)."""
        pinv, bias = self._linear[index]
        return pinv.to(dtype), None if bias is None else bias.to(dtype)

    def configured(self, *, eps: float | None = ORIGINAL_EPS, eps_head: float | None = None) -> list[Step]:
        """The steps with their clamp margins: eps for every bounded activation's inverse (0 or None: no clamp),
        eps_head for a Bernoulli kind's (None: eps)."""
        steps = []
        for step in self.steps:
            if step.kind.output_range is None:
                steps.append(step)
                continue
            try:
                margin = step.kind.check_eps(eps if eps_head is None or not step.kind.bernoulli else eps_head)
            except StudyError as exc:
                raise StudyError(f"decoder layer {step.index} ({step.type_name}): {exc}") from None
            steps.append(Step(step.index, step.name, step.type_name, step.kind, margin))
        return steps

    def _input(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x as (N, D) in dtype on the decoder's device, refused (one line) unless it is a non-empty batch of
        the decoder's outputs (plain.check_images)."""
        if not dtype.is_floating_point:
            raise StudyError(f"inverse dtype must be floating point, got {dtype}")
        x = check_images(x, self.in_features, self.steps[0].kind.output_range)
        return x.to(dtype=dtype, device=self.device)

    def apply(self, step: Step, h: torch.Tensor) -> torch.Tensor:
        """One step on h (never written: a new tensor)."""
        if step.kind.is_linear:
            pinv, bias = self.pinv(step.index, h.dtype)
            if bias is not None:
                h = h - bias
            return nn.functional.linear(h, pinv)
        return step.kind.inverse(self._plain[step.index], step.kind.clamp(h, step.eps) if step.kind.output_range else h)

    def invert(self, x: torch.Tensor, *, dtype: torch.dtype = torch.float64, eps: float | None = ORIGINAL_EPS,
               eps_head: float | None = None) -> torch.Tensor:
        """z_hat from images x in dtype (x is never written)."""
        steps = self.configured(eps=eps, eps_head=eps_head)
        h = self._input(x, dtype)
        with torch.no_grad():
            for step in steps:
                h = self.apply(step, h)
        return h

    def trace(self, x: torch.Tensor, *, dtype: torch.dtype = torch.float64, eps: float | None = ORIGINAL_EPS,
              eps_head: float | None = None) -> list[_TraceStep]:
        """(step, value arriving, output) for every step; the last output is invert(x)."""
        h = self._input(x, dtype)
        trace = []
        with torch.no_grad():
            for step in self.configured(eps=eps, eps_head=eps_head):
                out = self.apply(step, h)
                trace.append(_TraceStep(step, h, out))
                h = out
        return trace


def _decoder_in(decoder: nn.Sequential, dtype: torch.dtype) -> nn.Sequential:
    """A copy of the decoder computing in `dtype` (the model itself stays float32)."""
    return copy.deepcopy(decoder).to(dtype).eval()


def realizable(decoder: nn.Sequential, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x = D(z) computed in dtype (by a copy of the decoder in dtype): images the chain can invert."""
    dec = _decoder_in(decoder, dtype)
    param = next(dec.parameters(), None)
    with torch.no_grad():
        return dec(z.to(dtype=dtype, device=None if param is None else param.device))


def forward_trace(decoder: nn.Sequential, z: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Output of every decoder layer (so pre-activations too), in dtype (default: the decoder's)."""
    if dtype is not None:
        decoder = _decoder_in(decoder, dtype)
    param = next(decoder.parameters(), None)
    h = z if param is None else z.to(dtype=param.dtype, device=param.device)
    outputs = []
    with torch.no_grad():
        for layer in decoder:
            h = layer(h)
            outputs.append(h)
    return outputs
