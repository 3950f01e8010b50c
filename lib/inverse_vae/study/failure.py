"""Failure analysis (notebook 04): where the pseudo-inverse chain loses the input, measured, for the two
obstacles the original project named: the Bernoulli head's inverse at zero pixels (logit(0) = -inf, handled by a
clamp), and the interval domain of a boxed hidden kind's inverse (table: boxed; the original's atanh on (-1, 1)).
`chain`: the decoder's InverseChain when one is at hand (its pseudo-inverses take a second).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..constants import IMAGE_SIDE, ORIGINAL_EPS
from ..core.table import KINDS, has_kind, kind_names
from ..inversion.chain import DTYPES, InverseChain, realizable
from ..inversion.methods import layerwise_constrained
from ..metrics import image_metrics, latent_recovery
from ..progress import progress
from .evaluate import probe_accuracy
from .sentences import say

CLAMP_SWEEP = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 0.0)  # 0: no clamp
# The boxed kinds as the text names them: their types, their inverses and their domains.
_BOXED, _BOXED_INVERSE = kind_names("boxed"), kind_names("boxed", "inverse_name")
_BOX_ONLY = f"{_BOXED_INVERSE} box only"  # 04's ablation: the layer-wise solve with the hidden boxes alone


def pixel_extremes(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Share of pixels exactly 0 and exactly 1: overall, per digit, and per position (28x28)."""
    flat = images.reshape(len(images), -1)
    zero, one = (flat == 0).double(), (flat == 1).double()
    per_digit = {int(d): {"zero": float(zero[labels == d].mean()), "one": float(one[labels == d].mean())}
                 for d in labels.unique()}
    return {"zero": float(zero.mean()), "one": float(one.mean()), "per_digit": per_digit,
            "zero_map": zero.mean(0).reshape(IMAGE_SIDE, IMAGE_SIDE).numpy(),
            "one_map": one.mean(0).reshape(IMAGE_SIDE, IMAGE_SIDE).numpy()}


def clamp_targets(eps_list=CLAMP_SWEEP) -> dict:
    """What the Bernoulli head's inverse (logit) turns a 0 and a 1 pixel into, per clamp margin."""
    return {eps: (float(torch.logit(torch.tensor(eps, dtype=torch.float64))) if eps > 0 else float("-inf"))
            for eps in eps_list}


def _trace(decoder, x, eps, chain, dtype=torch.float64):
    return (chain or InverseChain(decoder)).trace(x, dtype=dtype, eps=eps)


def _invert_with(decoder: nn.Sequential, x: torch.Tensor, eps: float, dtype=torch.float64,
                chain: InverseChain | None = None) -> torch.Tensor:
    """z_hat of the chain with clamp margin eps, in dtype."""
    return (chain or InverseChain(decoder)).invert(x, dtype=dtype, eps=eps)


def _reconstruct(decoder: nn.Sequential, z_hat: torch.Tensor) -> torch.Tensor:
    """D(z_hat) in float32 (the model as a user runs it); inf/nan latents give nan images."""
    with torch.no_grad():
        return decoder(z_hat.float())


def clamp_sweep(decoder: nn.Sequential, x_real: torch.Tensor, z_prior: torch.Tensor, eps_list=CLAMP_SWEEP) -> list[dict]:
    """One row per eps: realizable latent recovery (both arithmetics) and real-image reconstruction."""
    rows, chain = [], InverseChain(decoder)
    outputs = {name: realizable(decoder, z_prior, dtype) for name, dtype in DTYPES.items()}
    # A step per chain: each arithmetic's realizable images, then the real ones
    with progress(None, total=len(eps_list) * (len(DTYPES) + 1), desc="clamp margins, chains") as bar:
        for eps in eps_list:
            row = {"eps": eps}
            for name, dtype in DTYPES.items():
                rec = latent_recovery(_invert_with(decoder, outputs[name], eps, dtype, chain), z_prior.to(dtype))
                row.update({f"realizable_{name}_{k}": rec[k] for k in
                            ("success_1e-2", "success_1e-4", "success_1e-6", "rel_err_median", "nonfinite")})
                bar.update()
            z_hat = _invert_with(decoder, x_real, eps, torch.float64, chain)
            row["real_nonfinite"] = int((~torch.isfinite(z_hat).all(dim=1)).sum())
            row.update({f"real_{k}": v for k, v in image_metrics(_reconstruct(decoder, z_hat), x_real).items()
                        if k != "nonfinite"})
            rows.append(row)
            bar.update()
    return rows


def best_eps(rows: list[dict], key: str = "real_bce") -> float:
    """The sweep's eps with the lowest finite value of `key` (real-image BCE by default)."""
    return min((r for r in rows if np.isfinite(r[key])), key=lambda r: r[key])["eps"]


def arriving_values(decoder: nn.Sequential, x: torch.Tensor, eps: float, chain: InverseChain | None = None) -> dict:
    """The value reaching each inverse step (before its clamp), keyed by decoder layer index."""
    return {t.step.index: t.arriving for t in _trace(decoder, x, eps, chain)}


def domain_violations(decoder: nn.Sequential, x: torch.Tensor, eps: float, chain: InverseChain | None = None) -> dict:
    """Per boxed layer: share of units (and of samples with any unit) outside its range before the clamp."""
    arriving, out = arriving_values(decoder, x, eps, chain), {}
    for i, layer in enumerate(decoder):
        if type(layer) in KINDS and KINDS[type(layer)].boxed:
            low, high = KINDS[type(layer)].output_range
            outside = ~((arriving[i] > low) & (arriving[i] < high))  # nan counts as outside
            out[f"{i}:{type(layer).__name__}"] = {"units": float(outside.double().mean()),
                                "samples_with_any": float(outside.any(dim=1).double().mean())}
    return out


def singular_values(decoder: nn.Sequential) -> dict[str, np.ndarray]:
    return {f"{i}:Linear {layer.in_features}->{layer.out_features}":
            torch.linalg.svdvals(layer.weight.detach().double()).cpu().numpy()
            for i, layer in enumerate(decoder) if isinstance(layer, nn.Linear)}


def _summary(values: torch.Tensor, finite_only: bool = True) -> dict:
    """median, p99, max and n of the values (the finite ones only, unless told)."""
    values = (values[torch.isfinite(values)] if finite_only else values).cpu().numpy()
    if values.size == 0:
        return {"median": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    return {"median": float(np.median(values)), "p99": float(np.quantile(values, 0.99)),
            "max": float(values.max()), "n": int(values.size)}


def projection_residuals(decoder: nn.Sequential, x: torch.Tensor, eps: float, chain: InverseChain | None = None) -> dict:
    """Per Linear: ||(I - W W+) y|| / ||y|| of the y arriving at its pinv step (0 when y is in W's range)."""
    out = {}
    for step, arriving, layer_input in _trace(decoder, x, eps, chain):
        if step.kind.is_linear:
            layer = decoder[step.index]
            w = layer.weight.detach().to(torch.float64)
            y = arriving - (0 if layer.bias is None else layer.bias.detach().to(torch.float64))
            out[f"{step.index}:Linear"] = _summary((y - layer_input @ w.T).norm(dim=1) / y.norm(dim=1))
    return out


def residual_regimes(decoder: nn.Sequential, x_real: torch.Tensor, x_realizable: torch.Tensor) -> list[tuple]:
    """(regime, images, eps) for projection_residuals: with the original clamps where the decoder has
    a kind to clamp, and realizable images with no clamp."""
    if not has_kind(decoder, "two_sided"):
        return [("real, no clamp", x_real, 0.0), ("realizable, no clamp", x_realizable, 0.0)]
    return [("real, original clamps", x_real, ORIGINAL_EPS), ("realizable, original clamps", x_realizable, ORIGINAL_EPS),
            ("realizable, no clamp", x_realizable, 0.0)]


def atanh_amplification(decoder: nn.Sequential, x: torch.Tensor, eps: float, chain: InverseChain | None = None) -> dict:
    """Per boxed layer: the slope of its inverse (atanh's 1/(1 - h^2)) at the (clamped) values it receives."""
    return {f"{step.index}:{step.type_name}": _summary(step.kind.inverse_slope(None, step.kind.clamp(y, step.eps)).flatten())
            for step, y, _ in _trace(decoder, x, eps, chain) if step.kind.boxed}


def decoder_logits_at_zero_pixels(model, x: torch.Tensor, means: torch.Tensor) -> dict:
    """What the decoder outputs before its Bernoulli head where x is exactly 0, from the encoder mean: against
    logit(eps), what the clamp asks of the inverse at a black pixel."""
    with torch.no_grad():
        logits = model.decoder[:-1](means.to(next(model.parameters()).device)).reshape(len(x), -1).cpu()
    return _summary(logits[x.reshape(len(x), -1) == 0].double(), finite_only=False)


def _real_row(decoder, z_hat, x, labels, probe=None, squeeze_range=None) -> dict:
    """D(z_hat) against x (mapped back from a squeezed range first), and the probe on z_hat."""
    x_hat = _reconstruct(decoder, z_hat)
    if squeeze_range is not None:
        lo, hi = squeeze_range
        x_hat = ((x_hat - lo) / (hi - lo)).clamp(0, 1)
    m = image_metrics(x_hat, x)
    return {"real_bce": m["bce"], "real_mse": m["mse"], "real_psnr": m["psnr"], "real_ssim": m["ssim"],
            "real_nonfinite": int((~torch.isfinite(z_hat).all(dim=1)).sum()),
            "real_probe_accuracy": probe_accuracy(probe, z_hat.double().cpu().numpy(), labels) if probe else float("nan")}


def fix_inverters(eps_best: float, delta: float, eps: float = ORIGINAL_EPS, decoder: nn.Sequential | None = None) -> dict:
    """name -> invert(decoder, x) -> z_hat (float64): the original chain, its fixes and the ablations;
    with a decoder without a boxed kind, no box-only ablation (there is no domain to box; 04 says so)."""
    def layerwise(**flags):
        return lambda dec, x: layerwise_constrained(dec, x, delta=delta, eps=eps, dtype=torch.float64, **flags).z

    inverters = {
        f"original chain (eps {eps:g})": lambda dec, x: _invert_with(dec, x, eps),
        f"best clamp (eps {eps_best:g})": lambda dec, x: _invert_with(dec, x, eps_best),
        "zeros one-sided only": layerwise(boxed=False),
        _BOX_ONLY: layerwise(one_sided_pixels=False),
        "constrained layer-wise": layerwise(),
    }
    if decoder is not None and not has_kind(decoder, "boxed"):
        del inverters[_BOX_ONLY]
    return inverters


def _squeezed_chain(decoder, images):
    # Targets live in [lo, hi] inside (0, 1): the head's inverse needs no clamp, the hidden ones keep theirs.
    return InverseChain(decoder).invert(images, dtype=torch.float64, eps=ORIGINAL_EPS, eps_head=0.0)


def compare_fixes(model, squeezed_model, x, labels, z_prior, probe, *, eps_best: float, delta: float,
                  squeeze_range=None) -> dict:
    """Every fix on the same real and realizable images: one row of numbers per fix (no squeezed
    row when squeezed_model is None: that run is not trained, 04 says so)."""
    def encoder(decoder, images):
        with torch.no_grad():
            return model.encode(images.float().to(next(model.parameters()).device))[0].double()

    flat = x.reshape(len(x), -1).double()
    cases = [(name, model.decoder, invert, flat, probe, None)
             for name, invert in fix_inverters(eps_best, delta, decoder=model.decoder).items()]
    if squeezed_model is not None:
        lo, hi = squeeze_range
        cases.append((f"squeezed targets [{lo:g}, {hi:g}]", squeezed_model.decoder, _squeezed_chain,
                      lo + (hi - lo) * flat, None, squeeze_range))
    cases.append(("encoder mean (reference)", model.decoder, encoder, x, probe, None))
    rows = {}
    with progress(None, total=2 * len(cases), desc="fixes, real and realizable images") as bar:
        for name, decoder, invert, images, row_probe, squeezed in cases:
            real = _real_row(decoder, invert(decoder, images), x, labels, row_probe, squeezed)
            bar.update()
            rec = latent_recovery(invert(decoder, realizable(decoder, z_prior, torch.float64)), z_prior.double())
            rows[name] = {**real, **{f"realizable_{k}": rec[k] for k in ("success_1e-4", "success_1e-6",
                                                                          "rel_err_median", "nonfinite")}}
            bar.update()
    return rows


def conclusion(fixes: dict, test_pixels: dict) -> str:
    """Two or three sentences naming, with this run's numbers, the costlier obstacle and the best fix
    (without the box-only row, for a decoder without a boxed kind, only the zero pixels are weighed)."""
    original = next(iter(fixes.values()))
    candidates = {k: v for k, v in list(fixes.items())[1:] if "reference" not in k}
    best = min(candidates, key=lambda k: candidates[k]["real_bce"])
    return say("failure_conclusion", zero=test_pixels["zero"], original=original, zeros=fixes["zeros one-sided only"],
               box=fixes.get(_BOX_ONLY), boxed=_BOXED, boxed_inverse=_BOXED_INVERSE,
               ranges=[k.output_range for k in KINDS.values() if k.boxed], best=best, fix=candidates[best],
               reference=fixes["encoder mean (reference)"])
