"""The decoder as a list of plain layers (weights detached, in the working dtype), and what every solver
computes from it: the forward pass, its Jacobian, the BCE against images; the one check of input images."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.table import Plain, kind_names, plain_layer
from ..errors import StudyError

__all__ = ["bce", "check_images", "forward", "forward_jacobian", "images", "latent_dim", "nan_where_unusable",
           "plain_layers"]


def plain_layers(decoder: nn.Module, dtype: torch.dtype | None) -> tuple[list[Plain], torch.dtype, torch.device]:
    """The decoder's layers detached and cast to dtype (None: the decoder's), so no method ever touches its
    parameters; with that dtype and the device. Invertibility is decided in the decoder's own dtype."""
    if not isinstance(decoder, nn.Sequential) or len(decoder) == 0:
        raise StudyError(f"decoder must be a non-empty nn.Sequential, got {type(decoder).__name__}")
    param = next(decoder.parameters(), None)
    if param is None:
        raise StudyError("decoder has no parameters (no Linear layer)")
    dtype = param.dtype if dtype is None else dtype
    if not dtype.is_floating_point:
        raise StudyError(f"dtype must be floating point, got {dtype}")
    return [plain_layer(i, layer, dtype, param.dtype) for i, layer in enumerate(decoder)], dtype, param.device


def forward(layers: list[Plain], z: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        z = layer.forward(z)
    return z


def forward_jacobian(layers: list[Plain], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D(z) (n, D) and its transposed Jacobian (n, d, D) by forward mode, kept transposed so that each Linear
    is one (n d, in) @ (in, out) product rather than n small ones (twice as fast on CPU in float64)."""
    n, d = z.shape
    jac_t = torch.eye(d, dtype=z.dtype, device=z.device).expand(n, d, d)
    for layer in layers:
        a, z = z, layer.forward(z)
        if layer.kind.is_linear:
            jac_t = (jac_t.reshape(n * d, jac_t.shape[2]) @ layer.weight.T).reshape(n, d, layer.weight.shape[0])
        elif layer.kind.derivative is not None:
            jac_t = jac_t * layer.kind.derivative(layer, a, z)[:, None, :]
    return z, jac_t


def require_bernoulli(layers: list[Plain], what: str) -> None:
    """Refuse (one line) a decoder whose last kind is no Bernoulli head: `what` needs its likelihood."""
    if not layers[-1].kind.bernoulli:
        raise StudyError(f"{what} needs a decoder ending in {kind_names('bernoulli')} (a Bernoulli likelihood); "
                         f"this one ends in {layers[-1].kind.name}")


def bce(layers: list[Plain], z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image BCE(D(z), x) summed over pixels: the methods' image loss. With a Bernoulli head from the
    logits, so a saturated pixel keeps a gradient; a decoder with an unbounded output (the autoencoder's)
    has no probabilities, so its loss is least squares 1/2 ||D(z) - x||^2 (what LM minimizes)."""
    if layers[-1].kind.bernoulli:
        return F.binary_cross_entropy_with_logits(forward(layers[:-1], z), x, reduction="none").sum(1)
    if layers[-1].kind.output_range is None:
        return 0.5 * (forward(layers, z) - x).pow(2).sum(1)
    return F.binary_cross_entropy(forward(layers, z).clamp(0, 1), x, reduction="none").sum(1)


def _value_range(x: torch.Tensor) -> tuple[float, float]:
    """(min, max) of x ignoring nan (a nan image is not refused: its latent comes back nan), in one pass."""
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    low, high = (float(v) for v in torch.aminmax(x))
    if math.isnan(low) or math.isnan(high):
        rest = x[~torch.isnan(x)]
        low, high = (float(v) for v in torch.aminmax(rest)) if rest.numel() else (0.0, 0.0)
    return low, high


# Real numbers that are not floating point: 0/1 pixels as integers or booleans convert exactly, and are accepted.
_INTEGER_DTYPES = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


def check_images(x, features: int | None, output_range: tuple[float, float] | None,
                 what: str = "images") -> torch.Tensor:
    """x as (N, features), refused in one StudyError line unless it is a non-empty dense tensor batch of real
    numbers that holds data, of the decoder's output size, with values in its output range up to a few ulps
    of rounding (none checked for an unbounded output). Validation only: never changes a value."""
    if not isinstance(x, torch.Tensor):
        raise StudyError(f"{what} must be a torch.Tensor (N, ...), got {type(x).__name__}")
    if x.is_meta:
        raise StudyError(f"{what} are on the meta device, which holds shapes but no values: pass {what} that hold "
                         f"data (on the cpu or a GPU)")
    if x.layout != torch.strided:
        raise StudyError(f"{what} must be a dense (strided) tensor, got layout {x.layout}: convert it with .to_dense()")
    if not (x.is_floating_point() or x.dtype in _INTEGER_DTYPES):
        raise StudyError(f"{what} must hold real numbers (floating point, integers or booleans), got {x.dtype}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise StudyError(f"expected a non-empty batch of {what} (N, ...), got shape {tuple(x.shape)}")
    x = x.reshape(x.shape[0], -1)
    if features is not None and x.shape[1] != features:
        raise StudyError(f"{what} have {x.shape[1]} features (pixels) per sample but the decoder outputs {features}")
    if output_range is not None and x.numel():
        low, high = _value_range(x)
        slack = 16 * torch.finfo(x.dtype).eps if x.dtype.is_floating_point else 0.0
        if low < output_range[0] - slack or high > output_range[1] + slack:
            hint = " (pixels in 0-255? divide by 255)" if high > 2 else ""
            raise StudyError(f"{what} must lie in [{output_range[0]:g}, {output_range[1]:g}], the decoder's output "
                             f"range, got values from {low:g} to {high:g}{hint}")
    return x


def images(layers: list[Plain], x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """x as (N, D) in the working dtype and device, checked (check_images) against the decoder."""
    out = next(layer.weight.shape[0] for layer in reversed(layers) if layer.kind.is_linear)
    return check_images(x, out, layers[-1].kind.output_range).to(dtype=dtype, device=device)


def nan_where_unusable(z: torch.Tensor, x: torch.Tensor, objective: torch.Tensor | None = None) -> torch.Tensor:
    """z with nan rows for images with a non-finite pixel (or final objective): such a row found nothing and
    must count as non-finite, not as a recovered latent. z itself when every row is usable."""
    bad = ~torch.isfinite(x).all(1)
    if objective is not None:
        bad = bad | ~torch.isfinite(objective)
    if not bad.any():
        return z
    return torch.where(bad[:, None], torch.full_like(z, math.nan), z)


def latent_dim(layers: list[Plain]) -> int:
    return next(layer.weight.shape[1] for layer in layers if layer.kind.is_linear)

