"""The inversion experiments of notebook 03: realizable images x = D(z), and real MNIST images.

inverse.py holds the mechanics (inverse layers, the pseudo-inverse chain, recovery metrics,
failure attribution); this module runs them the way the study reports them: in two
arithmetics, with the original clamp and with none, timed, as JSON-ready dicts.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from .inverse import CAUSES, attribute_failures, build_inverse, forward_trace, latent_recovery

ARITHMETICS = {"float32": torch.float32, "float64": torch.float64}
ORIGINAL_EPS = 1e-3  # the original clamps Sigmoid to [0.001, 0.999] and Tanh to [-0.999, 0.999]

# Below these relative errors a recovery counts as exact for the arithmetic: float32 rounding
# alone, amplified by the chain, is of order 1e-6, so 1e-6 is not a fair bar there.
ATTRIBUTION_THRESHOLD = {"float32": 1e-4, "float64": 1e-6}


def decoder_in(decoder: nn.Sequential, dtype: torch.dtype) -> nn.Sequential:
    """A copy of the decoder computing in `dtype` (the model itself stays float32)."""
    return copy.deepcopy(decoder).to(dtype).eval()


def timed_inverse(decoder: nn.Sequential, x: torch.Tensor, *, eps: float, dtype: torch.dtype):
    """z_hat and the seconds the chain took (pseudo-inverses included)."""
    started = time.perf_counter()
    chain = build_inverse(decoder, eps=eps, dtype=dtype)
    with torch.no_grad():
        z_hat = chain(x.reshape(x.shape[0], -1).to(dtype))
    return z_hat, time.perf_counter() - started


def realizable_case(decoder: nn.Sequential, z: torch.Tensor, arithmetic: str, eps: float) -> tuple[dict, dict]:
    """x = D(z) computed in `arithmetic`, inverted by the chain in the same arithmetic.

    Returns (JSON-ready summary, the full attribution with per-sample tensors).
    """
    dtype = ARITHMETICS[arithmetic]
    dec = decoder_in(decoder, dtype)
    z = z.to(dtype)
    with torch.no_grad():
        x = dec(z)
    z_hat, seconds = timed_inverse(dec, x, eps=eps, dtype=dtype)
    threshold = ATTRIBUTION_THRESHOLD[arithmetic]
    attribution = attribute_failures(dec, z, x, eps=eps, dtype=dtype, threshold=threshold)
    summary = {
        **latent_recovery(z_hat, z),
        "eps": eps,
        "seconds": seconds,
        "attribution_threshold": threshold,
        "n_failed": attribution["n_failed"],
        "failures": attribution["counts"],
        "step_errors": attribution["step_errors"],
    }
    return summary, attribution


def realizable_grid(decoder: nn.Sequential, sources: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Every source x arithmetic x {no clamp, original clamp}, keyed as metrics/03 names them."""
    summaries, attributions = {}, {}
    for source, z in sources.items():
        summaries[source] = {}
        for arithmetic in ARITHMETICS:
            for suffix, eps in (("", 0.0), ("_original_clamp", ORIGINAL_EPS)):
                key = arithmetic + suffix
                summaries[source][key], attributions[(source, key)] = realizable_case(decoder, z, arithmetic, eps)
    return summaries, attributions


def failure_table(summaries: dict) -> list[dict]:
    """Flat rows (source, case, layer, type, cause, count, share) for a DataFrame."""
    rows = []
    for source, cases in summaries.items():
        for case, s in cases.items():
            for f in s["failures"]:
                rows.append({"source": source, "case": case, **f, "share": f["count"] / s["n"]})
    return rows


def failure_frame(summaries: dict):
    """Failure counts as a DataFrame: a row per (source, case), a column per (layer, type, cause).

    Cases with no failing sample show as zero rows; with no failures at all the frame is empty.
    """
    import pandas as pd

    rows = failure_table(summaries)
    index = pd.MultiIndex.from_tuples([(s, c) for s, cases in summaries.items() for c in cases], names=["source", "case"])
    if not rows:
        return pd.DataFrame(index=index)
    frame = pd.DataFrame(rows).pivot_table(index=["source", "case"], columns=["layer", "type", "cause"],
                                           values="count", fill_value=0, aggfunc="sum")
    return frame.reindex(index, fill_value=0)


def saturation_point(fn, dtype: torch.dtype, target: float = 1.0) -> float:
    """Smallest a > 0 with fn(a) == target exactly in `dtype` (bisection on float64 a)."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if fn(torch.tensor(mid, dtype=dtype)).item() == target:
            hi = mid
        else:
            lo = mid
    return hi


def saturation_points() -> dict:
    """Where tanh reaches exactly +-1 and sigmoid exactly 1 or 0, per arithmetic."""
    out = {}
    for name, dtype in ARITHMETICS.items():
        out[name] = {
            "tanh_to_1": saturation_point(torch.tanh, dtype),
            "sigmoid_to_1": saturation_point(torch.sigmoid, dtype),
            "sigmoid_to_0": -saturation_point(lambda a: torch.sigmoid(-a), dtype, target=0.0),
        }
    return out


def preactivations(decoder: nn.Sequential, z: torch.Tensor) -> dict[str, np.ndarray]:
    """The input of every activation of the decoder (the Linear outputs), in float64."""
    outputs = forward_trace(decoder_in(decoder, torch.float64), z.to(torch.float64))
    return {f"{i}:{type(decoder[i]).__name__}": outputs[i].numpy().ravel()
            for i in range(len(decoder)) if isinstance(decoder[i], nn.Linear)}


def saturation_marks(decoder: nn.Sequential, points: dict) -> dict[str, dict[str, float]]:
    """For each Linear output of `preactivations`: where the activation after it saturates exactly,
    per arithmetic (vertical marks for its histogram); no marks before other activations."""
    which = {nn.Tanh: ("tanh_to_1", "tanh=±1"), nn.Sigmoid: ("sigmoid_to_1", "sigmoid=1")}
    marks = {}
    for i, layer in enumerate(decoder):
        if isinstance(layer, nn.Linear):
            after = type(decoder[i + 1]) if i + 1 < len(decoder) else None
            key, label = which.get(after, (None, None))
            marks[f"{i}:{type(layer).__name__}"] = (
                {f"{label} in {arithmetic}": p[key] for arithmetic, p in points.items()} if key else {})
    return marks


def saturated_share(decoder: nn.Sequential, z: torch.Tensor, points: dict) -> dict:
    """Share of each activation's inputs beyond the exact-saturation points, per arithmetic."""
    outputs = forward_trace(decoder_in(decoder, torch.float64), z.to(torch.float64))
    shares = {}
    for i, layer in enumerate(decoder):
        if not isinstance(layer, (nn.Tanh, nn.Sigmoid)):
            continue
        a = outputs[i - 1]
        entry = {}
        for arithmetic, p in points.items():
            if isinstance(layer, nn.Tanh):
                beyond = a.abs() >= p["tanh_to_1"]
            else:
                beyond = (a >= p["sigmoid_to_1"]) | (a <= p["sigmoid_to_0"])
            entry[arithmetic] = {"units": float(beyond.double().mean()),
                                 "samples_with_any": float(beyond.any(dim=1).double().mean())}
        shares[f"{i}:{type(layer).__name__}"] = entry
    return shares


def distance_to(z_hat: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far z_hat lies from a reference latent (the encoder mean): relative and absolute."""
    diff = (z_hat.double() - reference.double()).norm(dim=1)
    rel = diff / reference.double().norm(dim=1)
    finite = torch.isfinite(rel)
    out = {"reference_norm_median": float(reference.double().norm(dim=1).median()), "n_finite": int(finite.sum())}
    if not finite.any():  # every z_hat is inf/nan: no distance to report
        return {**out, "rel_dist_median": float("nan"), "rel_dist_p90": float("nan"),
                "dist_median": float("nan"), "z_hat_norm_median": float("nan")}
    r, d = rel[finite].numpy(), diff[finite].numpy()
    return {**out, "rel_dist_median": float(np.median(r)), "rel_dist_p90": float(np.quantile(r, 0.9)),
            "dist_median": float(np.median(d)),
            "z_hat_norm_median": float(np.median(z_hat.double().norm(dim=1)[finite].numpy()))}


__all__ = ["ARITHMETICS", "ATTRIBUTION_THRESHOLD", "CAUSES", "ORIGINAL_EPS", "decoder_in", "distance_to",
           "failure_frame", "failure_table", "preactivations", "realizable_case", "realizable_grid", "saturated_share",
           "saturation_points", "timed_inverse"]
