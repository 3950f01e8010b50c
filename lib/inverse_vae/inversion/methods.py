"""Ways to find a latent z whose decoding D(z) matches an image x, behind one call shape: a batch of images
(N, 784) or (N, 1, 28, 28) at once, on the decoder's device and dtype unless dtype= is given, returning a
timed MethodResult. Bad input is refused in one line (plain.check_images); an image with a non-finite pixel
or final objective gets a nan latent, never a start passed off as recovered. METHODS names the
configurations notebook 05 compares; run_method runs one."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..constants import ORIGINAL_EPS
from ..core.table import Plain
from ..errors import StudyError
from .chain import InverseChain
from .plain import images, nan_where_unusable, plain_layers
from .posterior import encoded, svi
from .solvers import box_least_squares, optimize
from .timing import MethodResult, record_bce, timed

__all__ = ["METHODS", "MethodResult", "MethodSpec", "box_least_squares", "closed_form", "encoder",
           "layerwise_constrained", "optimize", "run_method", "svi"]


def _method(decoder, x, dtype, compute):
    """compute(rec, layers, x, dtype) -> (z, iterations, info) under the clock (history: BCE at the end); nan
    latents for images with a non-finite pixel (after the clock stopped)."""
    layers, dtype, device = plain_layers(decoder, dtype)
    x = images(layers, x, dtype, device)

    def body(rec):
        z, iterations, info = compute(rec, layers, x, dtype)
        record_bce(rec, iterations, layers, z, x)
        return z, iterations, info

    result = timed(device, body)
    result.z = nan_where_unusable(result.z, x)
    return result


def closed_form(decoder: nn.Sequential, x: torch.Tensor, *, eps: float | None = ORIGINAL_EPS,
                dtype: torch.dtype | None = None, chain: InverseChain | None = None) -> MethodResult:
    """The pseudo-inverse chain (logit/atanh clamped by eps); its pseudo-inverses computed, and timed,
    in the call unless chain (the decoder's InverseChain, built beforehand) is given."""
    def compute(rec, layers, x, dtype):
        return (InverseChain(decoder) if chain is None else chain).invert(x, dtype=dtype, eps=eps), 0, {"eps": eps}

    return _method(decoder, x, dtype, compute)


def encoder(model: nn.Module, x: torch.Tensor, *, dtype: torch.dtype | None = None) -> MethodResult:
    """The VAE encoder's mean, model.encode(x)[0]."""
    if not hasattr(model, "encode") or not hasattr(model, "decoder"):
        raise StudyError(f"encoder needs the VAE model (with encode and decoder), got {type(model).__name__}")

    def compute(rec, layers, x, dtype):
        return encoded(model, x, dtype)[0], 0, {}

    return _method(model.decoder, x, dtype, compute)


def _preceding_box(layers: list[Plain], index: int, delta: float):
    """Box for the input of Linear layers[index]: the range of the activation feeding it, shrunk by delta."""
    for layer in reversed(layers[:index]):
        if layer.kind.output_range is not None:
            low, high = layer.kind.output_range
            return (low + delta, high - delta)
        if not layer.kind.is_identity:
            return None  # an unbounded activation (a leaky one) or a Linear
    return None  # the latent itself


def _invert_activation(layer: Plain, y: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                       margin: float, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-activation targets from outputs y clamped margin inside the range; with one_sided, values at the
    clamp become one-sided constraints (in the same direction: every activation here is increasing)."""
    if layer.kind.output_range is not None:
        low, high = layer.kind.box(margin, y.dtype)
        if one_sided:
            lower = lower | (y >= high)
            upper = upper | (y <= low)
        y = y.clamp(low, high)
    return layer.kind.inverse(layer, y), lower, upper


def layerwise_constrained(decoder: nn.Sequential, x: torch.Tensor, *, delta: float = 1e-3, eps: float = ORIGINAL_EPS,
                          iters: int = 300, tol: float = 1e-10, one_sided_hidden: bool = True,
                          one_sided_pixels: bool = True, boxed: bool = True,
                          dtype: torch.dtype | None = None) -> MethodResult:
    """One convex problem per layer, walking back from the image (after Lei et al. 2019): pixels within eps of 0
    or 1 constrain their logit one-sidedly, each Linear's input is box_least_squares' boxed to the range of the
    activation feeding it shrunk by delta, and (one_sided_hidden) units it leaves on the box boundary count as
    saturated, one-sided, too. one_sided_pixels=False and boxed=False switch the fixes off (04's ablations)."""
    if not 0 < delta < 0.5 or not 0 < eps < 0.5:
        raise StudyError(f"delta and eps must be in (0, 0.5), got delta={delta!r}, eps={eps!r}")

    def compute(rec, layers, x, dtype):
        y, margin, one_sided = x, eps, one_sided_pixels
        lower = upper = torch.zeros_like(x, dtype=torch.bool)
        hidden, stages, total = [], [], 0
        for index in reversed(range(len(layers))):
            layer = layers[index]
            if not layer.kind.is_linear:
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
        return y, total, {"hidden": hidden, "stages": stages, "delta": delta, "eps": eps,
                          "one_sided_hidden": one_sided_hidden, "one_sided_pixels": one_sided_pixels, "boxed": boxed}

    return _method(decoder, x, dtype, compute)


def _hybrid(decoder: nn.Sequential, x: torch.Tensor, *, start: MethodResult | torch.Tensor, refine: str = "lm",
            **refine_options) -> MethodResult:
    """Refine a start with optimize(method=refine, init=start); seconds include the start's. Start rows that
    are not finite (closed form without clamp) start from 0, the prior mean."""
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


_PROJECTION_PRIOR = 0.01  # prior weight of the converged projections: small, but it makes the optimum finite


@dataclass(frozen=True)
class MethodSpec:
    """A named configuration: which function, its options, and (for hybrids) the start's name."""

    function: str  # "closed_form", "layerwise_constrained", "encoder", "optimize", "hybrid" or "svi"
    options: Mapping = field(default_factory=dict)
    start: str | None = None
    summary: str = ""
    realizable_only: bool = False  # relies on x being in the decoder's range (e.g. retries until exact)
    slow: bool = False  # gradient descent for hundreds of steps: 05 may run it on fewer images (methods.slow_n)


METHODS: dict[str, MethodSpec] = {
    "closed_form": MethodSpec("closed_form", {"eps": ORIGINAL_EPS}, summary="pseudo-inverse chain, clamp eps 1e-3"),
    "layerwise_constrained": MethodSpec("layerwise_constrained", {"delta": 1e-3, "eps": ORIGINAL_EPS},
                                        summary="box-constrained least squares per layer"),
    "encoder": MethodSpec("encoder", summary="VAE encoder mean"),
    "optimize_adam": MethodSpec("optimize", {"method": "adam", "steps": 1000, "lr": 0.01, "restarts": 1},
                                summary="Adam on BCE, 1000 steps, one N(0, I) start", slow=True),
    "optimize_adam_10restarts": MethodSpec("optimize", {"method": "adam", "steps": 1000, "lr": 0.01, "restarts": 10},
                                           summary="Bora et al. 2017: Adam, 1000 steps, best of 10 N(0, I) starts", slow=True),
    "optimize_lbfgs": MethodSpec("optimize", {"method": "lbfgs", "steps": 200},
                                 summary="per-image L-BFGS on BCE, one N(0, I) start", slow=True),
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
                                      summary="encoder mean refined by 200 Adam steps", slow=True),
    "hybrid_encoder_newton_tr": MethodSpec(
        "hybrid", {"refine": "newton_tr", "steps": 200}, start="encoder",
        summary="encoder mean refined by trust-region Newton (exact Hessian) on pixel least squares, to convergence"),
    "optimize_newton_tr": MethodSpec("optimize", {"method": "newton_tr", "steps": 200},
                                     summary="trust-region Newton on pixel least squares, one N(0, I) start"),
    # The converged projection of a real image: without a prior the least-squares cost keeps falling as
    # ||z|| grows (the activations saturate), so there is no optimum to converge to; a small prior gives one.
    "hybrid_encoder_newton_tr_prior": MethodSpec(
        "hybrid", {"refine": "newton_tr", "steps": 200, "prior_weight": _PROJECTION_PRIOR}, start="encoder",
        summary="encoder mean refined by trust-region Newton on least squares + 0.01 ||z||^2 / 2 (a finite optimum)"),
    "hybrid_layerwise_newton_tr_prior": MethodSpec(
        "hybrid", {"refine": "newton_tr", "steps": 200, "prior_weight": _PROJECTION_PRIOR}, start="layerwise_constrained",
        summary="layer-wise solution refined by trust-region Newton on least squares + 0.01 ||z||^2 / 2"),
    "optimize_newton_tr_prior": MethodSpec(
        "optimize", {"method": "newton_tr", "steps": 200, "prior_weight": _PROJECTION_PRIOR},
        summary="trust-region Newton on least squares + 0.01 ||z||^2 / 2, one N(0, I) start"),
    "peer_scipy_lm_prior": MethodSpec(
        "hybrid", {"refine": "scipy_lm", "steps": 2000, "prior_weight": _PROJECTION_PRIOR}, start="encoder", slow=True,
        summary="the reference: SciPy least_squares (MINPACK LM) per image from the encoder mean, same objective"),
    # The VAE's own answer for a real image (posterior.py): its posterior, whose prior term (weight 1, the
    # model's) keeps z where the decoder was trained, instead of a point at infinity.
    "map_encoder_newton": MethodSpec(
        "hybrid", {"refine": "newton_tr", "steps": 200, "prior_weight": 1.0, "objective": "bce"}, start="encoder",
        summary="MAP: encoder mean refined by trust-region Newton (exact Hessian) on BCE + ||z||^2 / 2, the "
                "model's negative log joint, to convergence"),
    "peer_scipy_map": MethodSpec(
        "hybrid", {"refine": "scipy_map", "steps": 2000, "prior_weight": 1.0}, start="encoder",
        summary="the reference for MAP: SciPy L-BFGS-B per image from the encoder mean, same objective", slow=True),
    "svi_encoder": MethodSpec(
        "svi", {"steps": 500, "samples": 8, "lr": 0.02, "prior_weight": 1.0},
        summary="Cremer et al. 2018: per-image Gaussian q(z|x) from the encoder's, 500 Adam steps on the ELBO "
                "(8 draws per step); z = its mean", slow=True),
}

# Per start: the budget setting (LM, 100 steps, no prior) and the converged projection (05 sets them side by side).
BUDGET_VS_CONVERGED = {"encoder": ("hybrid_encoder_lm", "hybrid_encoder_newton_tr_prior"),
                       "layer-wise": ("hybrid_layerwise_lm", "hybrid_layerwise_newton_tr_prior"),
                       "random": ("optimize_lm", "optimize_newton_tr_prior")}
PEER = "peer_scipy_lm_prior"
MAP, MAP_PEER, SVI = "map_encoder_newton", "peer_scipy_map", "svi_encoder"  # the posterior's (posterior.py)


def run_method(name: str, decoder: nn.Sequential | None, x: torch.Tensor, model: nn.Module | None = None,
               *, starts: dict | None = None, **overrides) -> MethodResult:
    """Run METHODS[name] with overrides (a hybrid's go to its refinement, dtype to its start too). starts: a
    dict of start results on these images, filled as hybrids compute them, so that a shared start runs once."""
    spec = METHODS.get(name)
    if spec is None:
        raise StudyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    if model is None and (decoder is None or spec.function in ("encoder", "svi")):
        raise StudyError(f"method {name!r} needs model= (the VAE, for its decoder or encoder)")
    decoder = model.decoder if decoder is None else decoder
    options = {**spec.options, **overrides}
    if spec.function == "hybrid":
        start_overrides = {"dtype": overrides["dtype"]} if "dtype" in overrides else {}
        key = (spec.start, start_overrides.get("dtype"))
        start = None if starts is None else starts.get(key)
        if start is None:
            start = run_method(spec.start, decoder, x, model, **start_overrides)
            if starts is not None:
                starts[key] = start
        return _hybrid(decoder, x, start=start, **options)
    if spec.function in ("encoder", "svi"):
        return {"encoder": encoder, "svi": svi}[spec.function](model, x, **options)
    return {"closed_form": closed_form, "layerwise_constrained": layerwise_constrained,
            "optimize": optimize}[spec.function](decoder, x, **options)
