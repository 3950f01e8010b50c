"""Ways to find a latent z whose decoding D(z) matches an image x, behind one call shape.

Every method takes a batch of images, (N, 784) or (N, 1, 28, 28), treats all of them at
once (no per-image Python loop; chunks only bound memory), computes on the decoder's device
in the decoder's dtype unless ``dtype=`` is given, and returns a :class:`MethodResult` timed
around the whole call, with a history of the objective for quality-vs-time plots.

* :func:`closed_form`: the pseudo-inverse chain of inverse.py (logit/atanh clamped by eps).
* :func:`layerwise_constrained`: one convex, box-constrained least-squares problem per layer,
  saturated units as one-sided constraints (after Lei et al. 2019), via :func:`box_least_squares`.
* :func:`encoder`: the VAE encoder's mean.
* :func:`optimize`: search in latent space from random or given starts, with batched restarts
  (Bora et al. 2017): Adam or per-image L-BFGS on BCE, or Levenberg-Marquardt on pixel
  least squares.
* :func:`hybrid`: a start (an earlier result or latents) refined by LM or Adam.

:data:`METHODS` names the configurations the notebook compares; :func:`run_method` runs one.

History entries are ``{"iteration", "seconds", "objective", "bce"}``: ``objective`` is the
method's own (BCE plus prior for Adam/L-BFGS, half the squared pixel error plus prior for LM),
``bce`` the per-image BCE summed over pixels that every method shares, both averaged over images
(with restarts, each image's currently best restart). Time spent computing history values is
not charged to the method: ``seconds`` excludes it, ``info["wall_seconds"]`` does not.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import StudyError
from .inverse import build_inverse, run_chain

__all__ = [
    "METHODS",
    "MethodResult",
    "MethodSpec",
    "box_least_squares",
    "closed_form",
    "encoder",
    "hybrid",
    "image_bce",
    "layerwise_constrained",
    "optimize",
    "run_method",
]


@dataclass
class MethodResult:
    """What one inversion call found, and what it cost."""

    z: torch.Tensor  # (N, d) latents found
    seconds: float  # time of the whole call (history bookkeeping excluded)
    iterations: int  # outer iterations / steps actually run (0 for closed form)
    history: list[dict] = field(default_factory=list)  # {"iteration", "seconds", "objective", "bce"}
    info: dict = field(default_factory=dict)  # per-image final objective, restarts, ...


# --------------------------------------------------------------------------
# The decoder as a list of plain layers (weights detached, in the working dtype)


@dataclass(frozen=True)
class _Layer:
    kind: str  # "linear", "tanh", "sigmoid", "leaky_relu" or "identity"
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    slope: float = 0.0


# Output range of the bounded activations: what a box constraint and a clamp refer to.
_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
_KINDS = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.LeakyReLU: "leaky_relu", nn.Identity: "identity"}


def _layers(decoder: nn.Module, dtype: torch.dtype | None) -> tuple[list[_Layer], torch.dtype, torch.device]:
    """The decoder's layers, detached and cast, so no method ever touches its parameters."""
    if not isinstance(decoder, nn.Sequential) or len(decoder) == 0:
        raise StudyError(f"decoder must be a non-empty nn.Sequential, got {type(decoder).__name__}")
    param = next(decoder.parameters(), None)
    if param is None:
        raise StudyError("decoder has no parameters (no Linear layer)")
    dtype = param.dtype if dtype is None else dtype
    if not dtype.is_floating_point:
        raise StudyError(f"dtype must be floating point, got {dtype}")
    layers = []
    for i, layer in enumerate(decoder):
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.detach().to(dtype)
            layers.append(_Layer("linear", layer.weight.detach().to(dtype), bias))
        elif isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) == (1, -1):
            layers.append(_Layer("identity"))  # a no-op on (N, D)
        elif type(layer) in _KINDS:
            layers.append(_Layer(_KINDS[type(layer)], slope=getattr(layer, "negative_slope", 0.0)))
        else:
            raise StudyError(f"decoder layer {i} ({type(layer).__name__}) is not supported: "
                             "only Linear, Tanh, Sigmoid, LeakyReLU, Identity and Flatten are")
    return layers, dtype, param.device


def _activate(layer: _Layer, a: torch.Tensor) -> torch.Tensor:
    if layer.kind == "linear":
        return F.linear(a, layer.weight, layer.bias)
    if layer.kind == "tanh":
        return torch.tanh(a)
    if layer.kind == "sigmoid":
        return torch.sigmoid(a)
    if layer.kind == "leaky_relu":
        return F.leaky_relu(a, layer.slope)
    return a


def _derivative(layer: _Layer, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Elementwise slope of an activation at input a (output y); None for the identity."""
    if layer.kind == "tanh":
        return 1 - y * y
    if layer.kind == "sigmoid":
        return y * (1 - y)
    if layer.kind == "leaky_relu":
        return torch.where(a >= 0, 1.0, layer.slope).to(a.dtype)
    return None


def _forward(layers: list[_Layer], z: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        z = _activate(layer, z)
    return z


def _forward_jacobian(layers: list[_Layer], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D(z) (n, D) and its transposed Jacobian (n, d, D), by forward mode through the layers.

    Kept transposed so that each Linear is one (n d, in) @ (in, out) product rather than n
    small ones (twice as fast on CPU in float64); activations scale the columns by f'.
    """
    n, d = z.shape
    jac_t = torch.eye(d, dtype=z.dtype, device=z.device).expand(n, d, d)
    for layer in layers:
        a, z = z, _activate(layer, z)
        if layer.kind == "linear":
            jac_t = (jac_t.reshape(n * d, jac_t.shape[2]) @ layer.weight.T).reshape(n, d, layer.weight.shape[0])
        else:
            slope = _derivative(layer, a, z)
            if slope is not None:
                jac_t = jac_t * slope[:, None, :]
    return z, jac_t


def _split_sigmoid(layers: list[_Layer]) -> tuple[list[_Layer], bool]:
    """(layers up to the logits, True) when the decoder ends in Sigmoid, else (layers, False)."""
    if layers[-1].kind == "sigmoid":
        return layers[:-1], True
    return layers, False


def _bce(layers: list[_Layer], z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image BCE(D(z), x) summed over pixels.

    With a final Sigmoid it is computed from the logits, so a saturated pixel keeps a
    gradient (BCE on the rounded output has none once sigmoid returns exactly 0 or 1).
    """
    body, has_sigmoid = _split_sigmoid(layers)
    if has_sigmoid:
        return F.binary_cross_entropy_with_logits(_forward(body, z), x, reduction="none").sum(1)
    return F.binary_cross_entropy(_forward(layers, z).clamp(0, 1), x, reduction="none").sum(1)


def image_bce(decoder: nn.Sequential, z: torch.Tensor, x: torch.Tensor, *, dtype=None) -> torch.Tensor:
    """Per-image BCE(D(z), x) summed over pixels, as the methods measure it (from the logits)."""
    layers, dtype, device = _layers(decoder, dtype)
    x = _images(layers, x, dtype, device)
    with torch.no_grad():
        return _bce(layers, z.to(dtype=dtype, device=device), x)


def _images(layers: list[_Layer], x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """x as (N, D) in the working dtype and device, checked against the decoder's output size."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise StudyError(f"expected a non-empty batch of images (N, ...), got {shape}")
    x = x.reshape(x.shape[0], -1)
    out = next(layer.weight.shape[0] for layer in reversed(layers) if layer.kind == "linear")
    if x.shape[1] != out:
        raise StudyError(f"images have {x.shape[1]} pixels but the decoder outputs {out}")
    return x.to(dtype=dtype, device=device)


def _latent_dim(layers: list[_Layer]) -> int:
    return next(layer.weight.shape[1] for layer in layers if layer.kind == "linear")


# --------------------------------------------------------------------------
# Timing and history: one helper runs every method body


class _Recorder:
    """Clock and history of one call; computing history values is not charged to the method.

    With restarts, per-sample values come as (restarts * N,) and each image is reported
    at its restart with the lowest objective.
    """

    def __init__(self, device: torch.device, restarts: int = 1):
        self.device, self.restarts = device, restarts
        self.history: list[dict] = []
        self.excluded = 0.0
        self.muted = False
        self._sync()
        self.start = time.perf_counter()

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA is asynchronous: wait before reading the clock

    def elapsed(self) -> float:
        self._sync()
        return time.perf_counter() - self.start - self.excluded

    def record(self, iteration: int, bce: Callable[[], torch.Tensor],
               objective: Callable[[], torch.Tensor] | None = None, restarts: int | None = None):
        """Append one history entry; bce/objective are per-sample values computed lazily."""
        if self.muted:
            return
        seconds = self.elapsed()
        paused = time.perf_counter()
        with torch.no_grad():
            bce_values = bce()
            obj_values = bce_values if objective is None else objective()
            obj, bce_best = _best_restart(obj_values, restarts or self.restarts, bce_values)
        self.history.append({"iteration": int(iteration), "seconds": seconds,
                             "objective": float(obj.mean()), "bce": float(bce_best.mean())})
        self._sync()
        self.excluded += time.perf_counter() - paused


def _best_restart(objective: torch.Tensor, restarts: int, *others: torch.Tensor):
    """Per image, the restart with the lowest objective: (objective, *others) at it, shape (N,)."""
    obj = objective.reshape(restarts, -1)
    best = torch.nan_to_num(obj, nan=math.inf).argmin(0, keepdim=True)
    picked = [obj.gather(0, best)[0]]
    for values in others:
        values = values.reshape(restarts, obj.shape[1], *values.shape[1:])
        index = best.reshape(1, -1, *([1] * (values.dim() - 2))).expand(1, *values.shape[1:])
        picked.append(values.gather(0, index)[0])
    return picked


def _timed(device: torch.device, body: Callable[[_Recorder], tuple], restarts: int = 1) -> MethodResult:
    """Run body(recorder) -> (z, iterations, info) under the clock; the one timing path of all methods."""
    recorder = _Recorder(device, restarts)
    z, iterations, info = body(recorder)
    seconds = recorder.elapsed()
    info["wall_seconds"] = seconds + recorder.excluded
    return MethodResult(z.detach(), seconds, int(iterations), recorder.history, info)


# --------------------------------------------------------------------------
# Closed form and encoder


def closed_form(decoder: nn.Sequential, x: torch.Tensor, *, eps: float | None = 1e-3,
                dtype: torch.dtype | None = None) -> MethodResult:
    """The pseudo-inverse chain (logit/atanh clamped by eps, pinv per Linear); pinvs are timed too."""
    layers, dtype, device = _layers(decoder, dtype)
    x = _images(layers, x, dtype, device)

    def body(rec):
        z = run_chain(build_inverse(decoder, eps=eps, dtype=dtype).to(device), x)
        rec.record(0, lambda: _bce(layers, z, x))
        return z, 0, {"eps": eps}

    return _timed(device, body)


def encoder(model: nn.Module, x: torch.Tensor, *, dtype: torch.dtype | None = None) -> MethodResult:
    """The VAE encoder's mean, model.encode(x)[0]."""
    if not hasattr(model, "encode") or not hasattr(model, "decoder"):
        raise StudyError(f"encoder needs the VAE model (with encode and decoder), got {type(model).__name__}")
    layers, dtype, device = _layers(model.decoder, dtype)
    x = _images(layers, x, dtype, device)

    def body(rec):
        net = model if next(model.parameters()).dtype == dtype else copy.deepcopy(model).to(dtype)
        with torch.no_grad():
            z = net.encode(x)[0]
        rec.record(0, lambda: _bce(layers, z, x))
        return z, 0, {}

    return _timed(device, body)


# --------------------------------------------------------------------------
# Layer-wise constrained inversion


def _box_bounds(bound, dtype: torch.dtype) -> tuple[float, float] | None:
    """(low, high) from None (unbounded), a half-width b (|h| <= b) or a pair, as dtype values."""
    if bound is None:
        return None
    low, high = (-bound, bound) if isinstance(bound, (int, float)) else bound
    low, high = (float(torch.tensor(v, dtype=dtype)) for v in (low, high))
    if not low < high:
        raise StudyError(f"box bounds must satisfy low < high, got ({low}, {high})")
    return low, high


def _hinged(residual: torch.Tensor, lower: torch.Tensor | None, upper: torch.Tensor | None) -> torch.Tensor:
    """Residual W h - t with one-sided rows zeroed where their inequality holds."""
    if lower is not None:  # rows with W h >= t: only a shortfall counts
        residual = torch.where(lower, residual.clamp(max=0), residual)
    if upper is not None:  # rows with W h <= t: only an excess counts
        residual = torch.where(upper, residual.clamp(min=0), residual)
    return residual


def box_least_squares(W: torch.Tensor, targets: torch.Tensor, bound=None, *,
                      lower_mask: torch.Tensor | None = None, upper_mask: torch.Tensor | None = None,
                      iters: int = 300, tol: float = 1e-10,
                      init: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """min_h 1/2 sum_rows rho(W h - t) s.t. h in the box, for every row of targets (N, m) at once.

    rho is r^2 on equation rows; on rows in lower_mask (W h >= t) only r < 0 counts, on rows
    in upper_mask (W h <= t) only r > 0 (squared hinge). bound: None, b for |h| <= b, or
    (low, high). Batched FISTA with step 1/L, L = ||W||_2^2, and adaptive momentum restart,
    started from the clamped least-squares solution unless init is given. A sample stops
    when its step is below tol * (1 + ||h||) (tol floored at a few ulps: below that the
    step is rounding noise). Returns (h (N, n), iterations run).
    """
    if W.dim() != 2 or targets.dim() != 2 or targets.shape[1] != W.shape[0]:
        raise StudyError(f"box_least_squares needs W (m, n) and targets (N, m), got {tuple(W.shape)} "
                         f"and {tuple(targets.shape)}")
    for name, mask in (("lower_mask", lower_mask), ("upper_mask", upper_mask)):
        if mask is not None and mask.shape != targets.shape:
            raise StudyError(f"{name} shape {tuple(mask.shape)} does not match targets {tuple(targets.shape)}")
    dtype = targets.dtype
    W = W.to(dtype=dtype, device=targets.device)
    box = _box_bounds(bound, dtype)

    def project(h):
        return h if box is None else h.clamp(*box)

    w64 = W.double()
    lipschitz = float(torch.linalg.matrix_norm(w64, 2)) ** 2
    if init is None:
        init = targets @ torch.linalg.pinv(w64).to(dtype).T
    tol = max(tol, 4 * torch.finfo(dtype).eps)

    out = project(init.to(dtype)).clone()
    rows = torch.arange(targets.shape[0], device=targets.device)
    h, y, t = out.clone(), out.clone(), torch.ones_like(out[:, 0])
    tgt, low, up = targets, lower_mask, upper_mask
    iterations = 0
    while iterations < iters and rows.numel():
        iterations += 1
        grad = _hinged(y @ W.T - tgt, low, up) @ W
        h_new = project(y - grad / lipschitz)
        step = h_new - h
        # Restart momentum where it points uphill (O'Donoghue & Candes' gradient scheme).
        restart = ((y - h_new) * step).sum(1) > 0
        t_new = torch.where(restart, 1.0, (1 + torch.sqrt(1 + 4 * t * t)) / 2)
        beta = torch.where(restart, 0.0, (t - 1) / t_new)
        y, h, t = h_new + beta[:, None] * step, h_new, t_new
        done = step.norm(dim=1) <= tol * (1 + h.norm(dim=1))
        if done.any():
            out[rows[done]] = h[done]
            keep = ~done
            rows, h, y, t, tgt = rows[keep], h[keep], y[keep], t[keep], tgt[keep]
            low = None if low is None else low[keep]
            up = None if up is None else up[keep]
    out[rows] = h
    return out, iterations


def _preceding_box(layers: list[_Layer], index: int, delta: float):
    """Box for the input of Linear layers[index]: the range of the activation feeding it, shrunk by delta."""
    for layer in reversed(layers[:index]):
        if layer.kind in _RANGES:
            low, high = _RANGES[layer.kind]
            return (low + delta, high - delta)
        if layer.kind != "identity":
            return None  # LeakyReLU or Linear: unbounded
    return None  # the latent itself


def _invert_activation(layer: _Layer, y: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                       margin: float, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-activation targets from outputs y, clamped margin inside the range; with one_sided,
    values at the clamp become one-sided constraints.

    All activations here are increasing, so a one-sided constraint on y carries over to the
    pre-activation in the same direction.
    """
    if layer.kind in _RANGES:
        low, high = _box_bounds(tuple(v + s * margin for v, s in zip(_RANGES[layer.kind], (1, -1))), y.dtype)
        if one_sided:
            lower = lower | (y >= high)
            upper = upper | (y <= low)
        y = y.clamp(low, high)
        return (torch.atanh(y) if layer.kind == "tanh" else torch.logit(y)), lower, upper
    if layer.kind == "leaky_relu":
        return torch.where(y >= 0, y, y / layer.slope), lower, upper
    return y, lower, upper


def layerwise_constrained(decoder: nn.Sequential, x: torch.Tensor, *, delta: float = 1e-3, eps: float = 1e-3,
                          iters: int = 300, tol: float = 1e-10, one_sided_hidden: bool = True,
                          one_sided_pixels: bool = True, boxed: bool = True,
                          dtype: torch.dtype | None = None) -> MethodResult:
    """One convex problem per layer, walking back from the image (after Lei et al. 2019).

    Pixels within eps of 0 or 1 give one-sided constraints on their logit (x <= eps:
    a <= logit(eps); x >= 1 - eps: a >= logit(1 - eps)), the others equations a = logit(x).
    Each Linear's input is then found by :func:`box_least_squares`, boxed to the range of
    the activation feeding it shrunk by delta (unbounded for z). With one_sided_hidden, units
    the solver leaves on the box boundary count as saturated and constrain the layer below
    one-sidedly too (otherwise they are equations at atanh(1 - delta), as in a plain chain).
    one_sided_pixels=False (pixels clamped to [eps, 1 - eps] as equations) and boxed=False (no box:
    the solution is clipped before atanh, as the original chain does) switch off the two fixes
    separately, for ablations.
    info["hidden"]: the recovered activations, latent side first; info["stages"]: per layer.
    """
    if not 0 < delta < 0.5 or not 0 < eps < 0.5:
        raise StudyError(f"delta and eps must be in (0, 0.5), got delta={delta!r}, eps={eps!r}")
    layers, dtype, device = _layers(decoder, dtype)
    x = _images(layers, x, dtype, device)

    def body(rec):
        y, margin, one_sided = x, eps, one_sided_pixels
        lower = upper = torch.zeros_like(x, dtype=torch.bool)
        hidden, stages, total = [], [], 0
        for index in reversed(range(len(layers))):
            layer = layers[index]
            if layer.kind != "linear":
                y, lower, upper = _invert_activation(layer, y, lower, upper, margin, one_sided)
                continue
            box = _preceding_box(layers, index, delta) if boxed else None
            targets = y if layer.bias is None else y - layer.bias
            y, k = box_least_squares(layer.weight, targets, box, lower_mask=lower, upper_mask=upper,
                                     iters=iters, tol=tol)
            total += k
            stages.append({"layer": index, "iterations": k, "one_sided": float((lower | upper).double().mean()),
                           "seconds": rec.elapsed()})
            lower = upper = torch.zeros_like(y, dtype=torch.bool)
            if index > 0:
                hidden.insert(0, y)
            margin, one_sided = delta, one_sided_hidden
        rec.record(total, lambda: _bce(layers, y, x))
        return y, total, {"hidden": hidden, "stages": stages, "delta": delta, "eps": eps,
                          "one_sided_hidden": one_sided_hidden, "one_sided_pixels": one_sided_pixels,
                          "boxed": boxed}

    return _timed(device, body)


# --------------------------------------------------------------------------
# Iterative search in latent space


def _objective(layers, z, x, prior_weight: float) -> torch.Tensor:
    """Per-image BCE + prior_weight * ||z||^2 / 2."""
    value = _bce(layers, z, x)
    if prior_weight:
        value = value + 0.5 * prior_weight * (z * z).sum(1)
    return value


def _adam(layers, z0, x, rec, *, steps, lr, prior_weight, record_every):
    """Adam on the summed objective: exact per image, since Adam's update is elementwise."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        objective = _objective(layers, z, x, prior_weight)
        objective.sum().backward()
        if step % record_every == 0:
            value, current = objective.detach(), z.detach().clone()
            rec.record(step, lambda: _bce(layers, current, x), lambda: value)
        opt.step()
    z = z.detach()
    with torch.no_grad():
        final = _objective(layers, z, x, prior_weight)
    rec.record(steps, lambda: _bce(layers, z, x), lambda: final)
    return z, steps, final, {}


def _value_and_grad(layers, z, x, prior_weight):
    z = z.detach().requires_grad_(True)
    value = _objective(layers, z, x, prior_weight)
    (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad


def _two_loop(grad, S, Y, valid):
    """L-BFGS direction -H grad per sample from pairs S, Y (n, m, d), oldest first; valid (n, m)."""
    sy = (S * Y).sum(2)
    rho = torch.where(valid, 1 / torch.where(valid, sy, 1.0), 0.0)
    q, alphas = grad.clone(), []
    for i in reversed(range(S.shape[1])):
        alpha = rho[:, i] * (S[:, i] * q).sum(1)
        q = q - alpha[:, None] * Y[:, i]
        alphas.append(alpha)
    yy = (Y[:, -1] * Y[:, -1]).sum(1)
    gamma = torch.where(valid[:, -1], sy[:, -1] / torch.where(valid[:, -1], yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for i, alpha in zip(range(S.shape[1]), reversed(alphas)):
        beta = rho[:, i] * (Y[:, i] * r).sum(1)
        r = r + (alpha - beta)[:, None] * S[:, i]
    return -r


def _lbfgs(layers, z0, x, rec, *, steps, lr, prior_weight, record_every, memory=10, xtol=None,
           max_backtracks=30):
    """L-BFGS per image, batched: each image has its own curvature pairs and Armijo backtracking.

    (torch.optim.LBFGS on the summed objective would share one curvature model and one line
    search across all images, which is slow and not per image.) lr is unused: the first step
    of an image is scaled to length 1 in latent space, later ones start at the quasi-Newton step.
    An image stops when its step is below xtol * (||z|| + xtol) or no step lowers its objective:
    BCE's minimum is far from 0, so rounding of the objective, not the gradient, ends the
    search, at a relative precision of order sqrt(machine epsilon) (LM goes further).
    """
    n, d = z0.shape
    xtol = xtol if xtol is not None else torch.finfo(z0.dtype).eps ** (2 / 3)
    z = z0.clone()
    value, grad = _value_and_grad(layers, z, x, prior_weight)
    S = torch.zeros(n, memory, d, dtype=z.dtype, device=z.device)
    Y = torch.zeros_like(S)
    valid = torch.zeros(n, memory, dtype=torch.bool, device=z.device)
    active = torch.ones(n, dtype=torch.bool, device=z.device)
    done_at = steps
    for it in range(steps):
        direction = _two_loop(grad, S, Y, valid)
        slope = (direction * grad).sum(1)
        uphill = slope >= 0  # a bad curvature model: fall back to steepest descent
        direction = torch.where(uphill[:, None], -grad, direction)
        slope = torch.where(uphill, -(grad * grad).sum(1), slope)
        first = ~valid.any(1)
        t = torch.where(first, 1 / grad.norm(dim=1).clamp_min(1e-30), 1.0)
        pending = active.clone()
        with torch.no_grad():
            for _ in range(max_backtracks):
                trial = _objective(layers, z + t[:, None] * direction, x, prior_weight)
                pending &= ~(trial <= value + 1e-4 * t * slope)
                if not pending.any():
                    break
                t = torch.where(pending, t / 2, t)
        moved = active & ~pending
        z_new = torch.where(moved[:, None], z + t[:, None] * direction, z)
        value_new, grad_new = _value_and_grad(layers, z_new, x, prior_weight)
        s, y = z_new - z, grad_new - grad
        keep = moved & ((s * y).sum(1) > 1e-10 * (y * y).sum(1).sqrt() * s.norm(dim=1))
        S = torch.where(keep[:, None, None], torch.cat([S[:, 1:], s[:, None]], 1), S)
        Y = torch.where(keep[:, None, None], torch.cat([Y[:, 1:], y[:, None]], 1), Y)
        valid = torch.where(keep[:, None], torch.cat([valid[:, 1:], keep[:, None]], 1), valid)
        z, value, grad = z_new, torch.where(moved, value_new, value), torch.where(moved[:, None], grad_new, grad)
        active &= moved & (s.norm(dim=1) > xtol * (z.norm(dim=1) + xtol))
        if (it + 1) % record_every == 0:
            current, obj = z.clone(), value.clone()
            rec.record(it + 1, lambda: _bce(layers, current, x), lambda: obj)
        if not active.any():
            done_at = it + 1
            break
    rec.record(done_at, lambda: _bce(layers, z, x), lambda: value)
    return z, done_at, value, {"converged": ~active}


def _lm_terms(layers, z, x, prior_weight, chunk):
    """Per sample: cost 1/2||D(z) - x||^2 (+ prior), J^T J (n, d, d) and J^T r (n, d), in chunks."""
    costs, normals, grads = [], [], []
    for zc, xc in zip(z.split(chunk), x.split(chunk)):
        y, jac_t = _forward_jacobian(layers, zc)
        r = y - xc
        costs.append(0.5 * (r * r).sum(1))
        normals.append(jac_t @ jac_t.mT)
        grads.append((jac_t @ r[:, :, None])[:, :, 0])
    cost, normal, grad = torch.cat(costs), torch.cat(normals), torch.cat(grads)
    if prior_weight:  # the prior as extra residuals sqrt(w) z
        cost = cost + 0.5 * prior_weight * (z * z).sum(1)
        normal = normal + prior_weight * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        grad = grad + prior_weight * z
    return cost, normal, grad


def _lm_cost(layers, z, x, prior_weight, chunk):
    with torch.no_grad():
        cost = torch.cat([0.5 * ((_forward(layers, zc) - xc) ** 2).sum(1)
                          for zc, xc in zip(z.split(chunk), x.split(chunk))])
    return cost + 0.5 * prior_weight * (z * z).sum(1) if prior_weight else cost


def _lm_step(normal, grad, lam, damping="levenberg"):
    """Solve (J^T J + lam D) dz = -J^T r per sample, in float64 (d x d, cheap).

    D is mean(diag(J^T J)) I ("levenberg", default) or diag(J^T J) ("marquardt"). On the
    trained decoder Marquardt's scaling let many samples creep (a saturated latent direction
    gets almost no damping, so steps along it keep failing): 92.5% vs 100% of 200 prior
    samples solved in 60 steps from the same layer-wise start.
    A floor keeps D positive where the decoder ignores a latent direction.
    """
    normal, grad = normal.double(), grad.double()
    diag = torch.diagonal(normal, dim1=1, dim2=2)
    floor = 1e-12 * diag.amax(1, keepdim=True) + torch.finfo(torch.float64).tiny
    scale = diag.mean(1, keepdim=True).expand_as(diag) if damping == "levenberg" else diag
    damped = normal + torch.diag_embed(lam.double()[:, None] * scale.clamp_min(floor) + floor)
    step, _ = torch.linalg.solve_ex(damped, -grad)
    return step


def _lm(layers, z0, x, rec, *, steps, lr, prior_weight, record_every, chunk=2048, lam0=1e-3, xtol=None,
        max_rejects=8, damping="levenberg"):
    """Levenberg-Marquardt on r = D(z) - x, per sample damping, only unconverged samples computed.

    Pixel-space residuals weigh a saturated pixel by its vanishing Jacobian row, instead of
    blowing it up as logit does. A sample accepts a step that lowers its cost (lambda / 3),
    else rejects it (lambda * 4); it stops after an accepted step shorter than
    xtol * (||z|| + xtol), or after max_rejects rejections in a row (its cost is at rounding
    level). lr is unused.
    """
    if damping not in ("levenberg", "marquardt"):
        raise StudyError(f"LM damping must be 'levenberg' or 'marquardt', got {damping!r}")
    xtol = xtol if xtol is not None else torch.finfo(z0.dtype).eps ** (2 / 3)
    z = z0.clone()
    n = z.shape[0]
    with torch.no_grad():
        cost, normal, grad = _lm_terms(layers, z, x, prior_weight, chunk)
        lam = torch.full((n,), lam0, dtype=torch.float64, device=z.device)
        rejects = torch.zeros(n, dtype=torch.long, device=z.device)
        active = torch.arange(n, device=z.device)
        it = 0
        while it < steps and active.numel():
            it += 1
            step = _lm_step(normal[active], grad[active], lam[active], damping).to(z.dtype)
            trial = z[active] + step
            trial_cost = _lm_cost(layers, trial, x[active], prior_weight, chunk)
            ok = trial_cost < cost[active]  # False for nan
            accepted, rejected = active[ok], active[~ok]
            z[accepted], cost[accepted] = trial[ok], trial_cost[ok]
            lam[accepted] = (lam[accepted] / 3).clamp_min(1e-15)
            lam[rejected] *= 4
            rejects[accepted] = 0
            rejects[rejected] += 1
            small = ok & (step.norm(dim=1) <= xtol * (z[active].norm(dim=1) + xtol))
            active = active[~(small | (rejects[active] >= max_rejects))]
            refresh = active[torch.isin(active, accepted)]  # moved and still running: new J
            if refresh.numel():
                _, normal[refresh], grad[refresh] = _lm_terms(layers, z[refresh], x[refresh], prior_weight, chunk)
            if it % record_every == 0:
                snapshot, values = z.clone(), cost.clone()
                rec.record(it, lambda: _bce(layers, snapshot, x), lambda: values)
    rec.record(it, lambda: _bce(layers, z, x), lambda: cost)
    converged = torch.ones(n, dtype=torch.bool, device=z.device)
    converged[active] = False
    return z, it, cost, {"converged": converged, "lambda": lam}


_SOLVERS = {"adam": _adam, "lbfgs": _lbfgs, "lm": _lm}
_DEFAULT_STEPS = {"adam": 1000, "lbfgs": 200, "lm": 100}
_DEFAULT_RECORD_EVERY = {"adam": 10, "lbfgs": 1, "lm": 1}


def _initial_latents(init, restarts: int, n: int, d: int, seed: int, dtype, device) -> torch.Tensor:
    """(restarts * N, d) starts: N(0, I) from a seeded CPU generator (same on every device).

    init (N, d) replaces the first restart; init (restarts, N, d) replaces them all.
    """
    generator = torch.Generator().manual_seed(seed)
    z0 = torch.randn(restarts, n, d, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    if init is not None:
        init = torch.as_tensor(init).to(dtype=dtype, device=device)
        if init.shape == (n, d):
            z0[0] = init
        elif init.shape == (restarts, n, d):
            z0 = init.clone()
        else:
            raise StudyError(f"init must have shape ({n}, {d}) or ({restarts}, {n}, {d}), got {tuple(init.shape)}")
        if not torch.isfinite(z0).all():
            raise StudyError("init contains inf or nan")
    return z0.reshape(restarts * n, d)


def _best_of(solver, layers, z0, x, restarts: int, rec: _Recorder, **solver_options) -> tuple[dict, int, torch.Tensor]:
    """Run solver on (restarts * N) starts; per image, the values at its best restart.

    Returns ({"z", "objective", "bce", "restart", solver extras...} each (N, ...), iterations,
    objective of every restart (restarts, N)).
    """
    xs = x.repeat(restarts, 1)
    z, iterations, objective, extra = solver(layers, z0, xs, rec, **solver_options)
    with torch.no_grad():
        bce = _bce(layers, z, xs)
    restart = torch.arange(restarts, device=z.device).repeat_interleave(x.shape[0])
    values = {"z": z, "bce": bce, "restart": restart, **extra}
    best = _best_restart(objective, restarts, *values.values())
    return {"objective": best[0], **dict(zip(values, best[1:]))}, iterations, objective.reshape(restarts, -1)


def optimize(decoder: nn.Sequential, x: torch.Tensor, *, method: str = "adam", steps: int | None = None,
             lr: float = 0.01, restarts: int = 1, prior_weight: float = 0.0, init: torch.Tensor | None = None,
             seed: int = 0, dtype: torch.dtype | None = None, record_every: int | None = None,
             retry_above: float | None = None, retries: int = 8, **options) -> MethodResult:
    """Search z per image from restarts starts (all batched), keeping each image's best restart.

    method "adam": Adam (lr) on BCE + prior_weight ||z||^2 / 2, a fixed number of steps;
    "lbfgs": per-image L-BFGS on the same objective; "lm": Levenberg-Marquardt on
    1/2 ||D(z) - x||^2 + prior_weight ||z||^2 / 2. Starts are N(0, I) (seeded), or init.
    retry_above: images whose best objective stays above it (a local minimum, when x is
    known to be realizable) get `retries` fresh N(0, I) starts, batched, and keep the best.
    options go to the solver (lm: chunk, lam0, xtol, max_rejects, damping; lbfgs: memory,
    xtol, max_backtracks). info: per-image "objective", "bce", "restart" chosen (retry
    starts numbered after the first restarts), "retried"; "objective_restarts" (R, N).
    """
    if method not in _SOLVERS:
        raise StudyError(f"unknown optimize method {method!r}; known: {', '.join(_SOLVERS)}")
    steps = _DEFAULT_STEPS[method] if steps is None else int(steps)
    record_every = _DEFAULT_RECORD_EVERY[method] if record_every is None else int(record_every)
    if steps < 0 or restarts < 1 or retries < 1 or record_every < 1 or prior_weight < 0:
        raise StudyError(f"need steps >= 0, restarts >= 1, retries >= 1, record_every >= 1, prior_weight >= 0; "
                         f"got {steps}, {restarts}, {retries}, {record_every}, {prior_weight}")
    layers, dtype, device = _layers(decoder, dtype)
    x = _images(layers, x, dtype, device)
    n, d = x.shape[0], _latent_dim(layers)
    solver = _SOLVERS[method]
    solver_options = dict(steps=steps, lr=lr, prior_weight=prior_weight, record_every=record_every, **options)

    def body(rec):
        z0 = _initial_latents(init, restarts, n, d, seed, dtype, device)
        best, iterations, per_restart = _best_of(solver, layers, z0, x, restarts, rec, **solver_options)
        retried = torch.zeros(n, dtype=torch.bool, device=device)
        if retry_above is not None:
            retried = ~(best["objective"] <= retry_above)  # nan too
        if retried.any():
            rows = retried.nonzero()[:, 0]
            z0 = _initial_latents(None, retries, rows.numel(), d, seed + 1, dtype, device)
            rec.muted = True  # the history follows all images, not the retried subset
            again, more, _ = _best_of(solver, layers, z0, x[rows], retries, rec, **solver_options)
            rec.muted = False
            again["restart"] = again["restart"] + restarts
            better = again["objective"] < best["objective"][rows]
            for key, value in again.items():
                best[key][rows[better]] = value[better]
            iterations += more
            rec.record(iterations, lambda: best["bce"], lambda: best["objective"], restarts=1)
        info = {"method": method, "restarts": restarts, "prior_weight": prior_weight, **best,
                "retried": retried, "objective_restarts": per_restart}
        return info.pop("z"), iterations, info

    return _timed(device, body, restarts)


def hybrid(decoder: nn.Sequential, x: torch.Tensor, *, start: MethodResult | torch.Tensor, refine: str = "lm",
           **refine_options) -> MethodResult:
    """Refine a start with optimize(method=refine, init=start); seconds include the start's.

    Start rows that are not finite (closed form without clamp) start from 0, the prior mean.
    """
    if isinstance(start, MethodResult):
        z0, start_seconds, start_history = start.z, start.seconds, start.history
    elif isinstance(start, torch.Tensor):
        z0, start_seconds, start_history = start, 0.0, []
    else:
        raise StudyError(f"start must be a MethodResult or a tensor of latents, got {type(start).__name__}")
    if z0.dim() != 2:
        raise StudyError(f"start latents must be (N, d), got {tuple(z0.shape)}")
    finite = torch.isfinite(z0).all(1, keepdim=True)
    refined = optimize(decoder, x, method=refine, init=torch.where(finite, z0, 0.0), **refine_options)
    history = [{**h, "phase": "start"} for h in start_history]
    history += [{**h, "seconds": h["seconds"] + start_seconds, "phase": "refine"} for h in refined.history]
    info = {**refined.info, "start_seconds": start_seconds, "start_nonfinite": int((~finite).sum())}
    return MethodResult(refined.z, start_seconds + refined.seconds, refined.iterations, history, info)


# --------------------------------------------------------------------------
# Named configurations


@dataclass(frozen=True)
class MethodSpec:
    """A named configuration: which function, its options, and (for hybrids) the start's name."""

    function: str  # "closed_form", "layerwise_constrained", "encoder", "optimize" or "hybrid"
    options: Mapping = field(default_factory=dict)
    start: str | None = None
    summary: str = ""
    realizable_only: bool = False  # relies on x being in the decoder's range (e.g. retries until exact)


METHODS: dict[str, MethodSpec] = {
    "closed_form": MethodSpec("closed_form", {"eps": 1e-3}, summary="pseudo-inverse chain, clamp eps 1e-3"),
    "layerwise_constrained": MethodSpec("layerwise_constrained", {"delta": 1e-3, "eps": 1e-3},
                                        summary="box-constrained least squares per layer"),
    "encoder": MethodSpec("encoder", summary="VAE encoder mean"),
    "optimize_adam": MethodSpec("optimize", {"method": "adam", "steps": 1000, "lr": 0.01, "restarts": 1},
                                summary="Adam on BCE, 1000 steps, one N(0, I) start"),
    "optimize_adam_10restarts": MethodSpec("optimize", {"method": "adam", "steps": 1000, "lr": 0.01, "restarts": 10},
                                           summary="Bora et al. 2017: Adam, 1000 steps, best of 10 N(0, I) starts"),
    "optimize_lbfgs": MethodSpec("optimize", {"method": "lbfgs", "steps": 200},
                                 summary="per-image L-BFGS on BCE, one N(0, I) start"),
    "optimize_lm": MethodSpec("optimize", {"method": "lm", "steps": 100},
                              summary="Levenberg-Marquardt on pixel least squares, one N(0, I) start"),
    "hybrid_layerwise_lm_retry": MethodSpec(
        "hybrid", {"refine": "lm", "steps": 300, "retry_above": 1e-8, "retries": 8}, start="layerwise_constrained",
        summary="for realizable x only: layer-wise + LM, images left above cost 1e-8 retried from 8 N(0, I) starts",
        realizable_only=True),
    "hybrid_encoder_lm": MethodSpec("hybrid", {"refine": "lm", "steps": 100}, start="encoder",
                                    summary="encoder mean refined by LM"),
    "hybrid_layerwise_lm": MethodSpec("hybrid", {"refine": "lm", "steps": 100}, start="layerwise_constrained",
                                      summary="layer-wise constrained solution refined by LM"),
    "hybrid_encoder_adam": MethodSpec("hybrid", {"refine": "adam", "steps": 200, "lr": 0.01}, start="encoder",
                                      summary="encoder mean refined by 200 Adam steps"),
}


def run_method(name: str, decoder: nn.Sequential | None, x: torch.Tensor, model: nn.Module | None = None,
               **overrides) -> MethodResult:
    """Run the configuration METHODS[name] with overrides; decoder None means model.decoder.

    For a hybrid, overrides go to the refinement (dtype to the start as well).
    """
    spec = METHODS.get(name)
    if spec is None:
        raise StudyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    if decoder is None:
        if model is None:
            raise StudyError(f"method {name!r} needs a decoder or a model")
        decoder = model.decoder
    options = {**spec.options, **overrides}
    if spec.function == "encoder" and model is None:
        raise StudyError(f"method {name!r} needs model= (the VAE, for its encoder)")
    if spec.function == "hybrid":
        start_overrides = {"dtype": overrides["dtype"]} if "dtype" in overrides else {}
        start = run_method(spec.start, decoder, x, model, **start_overrides)
        return hybrid(decoder, x, start=start, **options)
    if spec.function == "encoder":
        return encoder(model, x, **options)
    function = {"closed_form": closed_form, "layerwise_constrained": layerwise_constrained,
                "optimize": optimize}[spec.function]
    return function(decoder, x, **options)
