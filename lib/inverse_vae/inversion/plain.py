"""The decoder as a list of plain layers (weights detached, in the working dtype), and what every
solver computes from it: the forward pass, its Jacobian, the BCE against images."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StudyError
from .table import Plain, plain_layer

__all__ = ["bce", "forward", "forward_jacobian", "image_bce", "images", "latent_dim", "plain_layers"]


def plain_layers(decoder: nn.Module, dtype: torch.dtype | None) -> tuple[list[Plain], torch.dtype, torch.device]:
    """The decoder's layers, detached and cast (dtype None: the decoder's), so no method ever
    touches its parameters; with the working dtype and device."""
    if not isinstance(decoder, nn.Sequential) or len(decoder) == 0:
        raise StudyError(f"decoder must be a non-empty nn.Sequential, got {type(decoder).__name__}")
    param = next(decoder.parameters(), None)
    if param is None:
        raise StudyError("decoder has no parameters (no Linear layer)")
    dtype = param.dtype if dtype is None else dtype
    if not dtype.is_floating_point:
        raise StudyError(f"dtype must be floating point, got {dtype}")
    return [plain_layer(i, layer, dtype) for i, layer in enumerate(decoder)], dtype, param.device


def forward(layers: list[Plain], z: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        z = layer.forward(z)
    return z


def forward_jacobian(layers: list[Plain], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D(z) (n, D) and its transposed Jacobian (n, d, D), by forward mode through the layers.

    Kept transposed so that each Linear is one (n d, in) @ (in, out) product rather than n
    small ones (twice as fast on CPU in float64); activations scale the columns by f'.
    """
    n, d = z.shape
    jac_t = torch.eye(d, dtype=z.dtype, device=z.device).expand(n, d, d)
    for layer in layers:
        a, z = z, layer.forward(z)
        if layer.kind.is_linear:
            jac_t = (jac_t.reshape(n * d, jac_t.shape[2]) @ layer.weight.T).reshape(n, d, layer.weight.shape[0])
        elif layer.kind.derivative is not None:
            jac_t = jac_t * layer.kind.derivative(layer, a, z)[:, None, :]
    return z, jac_t


def bce(layers: list[Plain], z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image BCE(D(z), x) summed over pixels.

    With a final Sigmoid it is computed from the logits, so a saturated pixel keeps a
    gradient (BCE on the rounded output has none once sigmoid returns exactly 0 or 1).
    """
    if layers[-1].kind.name == "sigmoid":
        return F.binary_cross_entropy_with_logits(forward(layers[:-1], z), x, reduction="none").sum(1)
    return F.binary_cross_entropy(forward(layers, z).clamp(0, 1), x, reduction="none").sum(1)


def images(layers: list[Plain], x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """x as (N, D) in the working dtype and device, checked against the decoder's output size."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise StudyError(f"expected a non-empty batch of images (N, ...), got {shape}")
    x = x.reshape(x.shape[0], -1)
    out = next(layer.weight.shape[0] for layer in reversed(layers) if layer.kind.is_linear)
    if x.shape[1] != out:
        raise StudyError(f"images have {x.shape[1]} pixels but the decoder outputs {out}")
    return x.to(dtype=dtype, device=device)


def latent_dim(layers: list[Plain]) -> int:
    return next(layer.weight.shape[1] for layer in layers if layer.kind.is_linear)


def image_bce(decoder: nn.Sequential, z: torch.Tensor, x: torch.Tensor, *, dtype=None) -> torch.Tensor:
    """Per-image BCE(D(z), x) summed over pixels, as the methods measure it (from the logits)."""
    layers, dtype, device = plain_layers(decoder, dtype)
    x = images(layers, x, dtype, device)
    with torch.no_grad():
        return bce(layers, z.to(dtype=dtype, device=device), x)
