"""The inversion experiments of notebook 03, on realizable images x = D(z) and real MNIST images, the way
the study reports them: in two arithmetics, with the original clamp and with none, timed, as JSON-ready dicts.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import torch
from torch import nn

from ..constants import ORIGINAL_EPS, RECOVERY_TARGETS
from ..core.table import KINDS, has_kind
from ..inversion.attribution import attribute_failures, failure_frame  # noqa: F401 (failure_frame: for 03)
from ..inversion.chain import DTYPES as ARITHMETICS
from ..inversion.chain import InverseChain, forward_trace, realizable
from ..metrics import latent_recovery
from ..progress import progress
from .sentences import say
from .shared import prior_latents


def timed_inverse(decoder: nn.Sequential, x: torch.Tensor, *, eps: float, dtype: torch.dtype):
    """z_hat and the seconds the chain took (pseudo-inverses included)."""
    started = time.perf_counter()
    z_hat = InverseChain(decoder).invert(x, dtype=dtype, eps=eps)
    return z_hat, time.perf_counter() - started


def realizable_case(decoder: nn.Sequential, z: torch.Tensor, arithmetic: str, eps: float) -> tuple[dict, dict]:
    """x = D(z) computed in `arithmetic`, inverted by the chain in the same arithmetic: (JSON-ready
    summary, the full attribution with per-sample tensors)."""
    dtype = ARITHMETICS[arithmetic]
    z = z.to(dtype)
    x = realizable(decoder, z, dtype)
    z_hat, seconds = timed_inverse(decoder, x, eps=eps, dtype=dtype)
    threshold = RECOVERY_TARGETS[arithmetic][1]
    attribution = attribute_failures(decoder, z, x, eps=eps, dtype=dtype, threshold=threshold)
    return {**latent_recovery(z_hat, z), "eps": eps, "seconds": seconds, "attribution_threshold": threshold,
            "n_failed": attribution["n_failed"], "failures": attribution["counts"],
            "step_errors": attribution["step_errors"]}, attribution


def clamp_cases(decoder: nn.Sequential) -> dict[str, float]:
    """Key suffix -> clamp margin: no clamp, and the original clamp where a kind has its two-sided range."""
    return {"": 0.0, "_original_clamp": ORIGINAL_EPS} if has_kind(decoder, "two_sided") else {"": 0.0}


def realizable_grid(decoder: nn.Sequential, sources: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Every source x arithmetic x clamp case (clamp_cases), keyed as metrics/03 names them."""
    summaries, attributions = {source: {} for source in sources}, {}
    cases = [(source, arithmetic, suffix, eps) for source in sources for arithmetic in ARITHMETICS
             for suffix, eps in clamp_cases(decoder).items()]  # one step each: a few seconds on the default run
    for source, arithmetic, suffix, eps in progress(cases, total=len(cases), desc="realizable cases"):
        key = arithmetic + suffix
        summaries[source][key], attributions[(source, key)] = realizable_case(decoder, sources[source], arithmetic, eps)
    return summaries, attributions


def real_cases(decoder: nn.Sequential) -> dict[str, float]:
    """The chains 03 runs on real images, name -> clamp margin (the original clamp where a kind has its range)."""
    cases = {"original_clamp": ORIGINAL_EPS, "no_clamp": 0.0}
    return cases if has_kind(decoder, "two_sided") else {"no_clamp": 0.0}


def case_title(case: str) -> str:
    return {"original_clamp": "original chain, clamp 1e-3", "no_clamp": "chain, no clamp"}[case]


def realizable_sources(run, model, means: torch.Tensor) -> dict[str, torch.Tensor]:
    """The latents whose images x = D(z) are exactly in the decoder's range: the run's prior sample
    (a VAE's; the autoencoder has none) and the encoder means of the test images."""
    if not model.variational:
        return {"encoder_mean": means}
    return {"prior": prior_latents(run, model.latent_dim), "encoder_mean": means}


def _ends(kinds) -> dict[str, tuple]:
    """'<kind>_to_<y>' -> (kind, y, side) for every end of the kinds (table: ends), in the table's order."""
    return {f"{kind.name}_to_{y:g}": (kind, y, side) for kind in kinds for y, side in kind.ends}


def saturation_points(decoder: nn.Sequential | None = None) -> dict:
    """Per arithmetic, the a closest to 0 where a kind's output is exactly one of its ends (table: ends; bisection on
    float64 |a|), signed (an odd kind's end at -a is its mirror); with a decoder, only for the kinds it has."""
    present = {type(layer) for layer in decoder} if decoder is not None else KINDS
    ends = _ends(kind for cls, kind in KINDS.items() if cls in present)

    def point(fn, dtype, target):
        lo, hi = 0.0, 1000.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if fn(torch.tensor(mid, dtype=dtype)).item() == target:
                hi = mid
            else:
                lo = mid
        return hi

    def signed(kind, y, side, dtype):
        sign = side or 1
        return sign * point(lambda a: kind.forward(None, sign * a), dtype, y)

    return {name: {key: signed(*end, dtype) for key, end in ends.items()} for name, dtype in ARITHMETICS.items()}


def preactivations(decoder: nn.Sequential, z: torch.Tensor) -> dict[str, np.ndarray]:
    """The input of every activation of the decoder (the Linear outputs), in float64."""
    outputs = forward_trace(decoder, z.to(torch.float64), torch.float64)
    return {f"{i}:{type(decoder[i]).__name__}": outputs[i].cpu().numpy().ravel()
            for i in range(len(decoder)) if isinstance(decoder[i], nn.Linear)}


def saturation_marks(decoder: nn.Sequential, points: dict) -> dict[str, dict[str, float]]:
    """For each Linear output of `preactivations`: where the activation after it saturates exactly,
    per arithmetic (vertical marks for its histogram); no marks before other activations."""
    marks = {}
    for i, layer in enumerate(decoder):
        if isinstance(layer, nn.Linear):
            after = [KINDS[type(decoder[i + 1])]] if i + 1 < len(decoder) and type(decoder[i + 1]) in KINDS else []
            key, (kind, y, side) = next(iter(_ends(after).items()), (None, (None, 0.0, 0)))  # its first end
            marks[f"{i}:Linear"] = {f"{kind.name}={'±' * (side == 0)}{y:g} in {arithmetic}": p[key]
                                    for arithmetic, p in points.items()} if key else {}
    return marks


def saturated_share(decoder: nn.Sequential, z: torch.Tensor, points: dict) -> dict:
    """Share of each activation's inputs beyond the exact-saturation points, per arithmetic."""
    outputs = forward_trace(decoder, z.to(torch.float64), torch.float64)
    shares = {}
    beyond_end = {0: lambda a, p: a.abs() >= p, 1: lambda a, p: a >= p, -1: lambda a, p: a <= p}
    for i, layer in enumerate(decoder):
        ends = _ends([KINDS[type(layer)]]) if type(layer) in KINDS else {}
        if ends:
            a, entry = outputs[i - 1], {}
            for arithmetic, p in points.items():
                beyond = functools.reduce(torch.logical_or, (beyond_end[side](a, p[key]) for key, (_, _, side) in ends.items()))
                entry[arithmetic] = {"units": float(beyond.double().mean()),
                                     "samples_with_any": float(beyond.any(dim=1).double().mean())}
            shares[f"{i}:{type(layer).__name__}"] = entry
    return shares


def distance_to(z_hat: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far z_hat lies from a reference latent (the encoder mean): relative and absolute."""
    reference = reference.to(z_hat.device)
    diff = (z_hat.double() - reference.double()).norm(dim=1)
    rel = diff / reference.double().norm(dim=1)
    finite = torch.isfinite(rel)
    out = {"reference_norm_median": float(reference.double().norm(dim=1).median()), "n_finite": int(finite.sum())}
    if not finite.any():  # every z_hat is inf/nan: no distance to report
        return {**out, **dict.fromkeys(("rel_dist_median", "rel_dist_p90", "dist_median", "z_hat_norm_median"), float("nan"))}
    r, d = rel[finite].cpu().numpy(), diff[finite].cpu().numpy()
    return {**out, "rel_dist_median": float(np.median(r)), "rel_dist_p90": float(np.quantile(r, 0.9)),
            "dist_median": float(np.median(d)),
            "z_hat_norm_median": float(np.median(z_hat.double().norm(dim=1)[finite].cpu().numpy()))}


def conclusion(realizable: dict, real: dict) -> str:
    """What 03 shows, in two paragraphs of Markdown built from its numbers (the cases that did not
    apply to this run are absent from both dicts, and from the text)."""
    source = next(iter(realizable))
    return say("invert_conclusion", source=source, p=realizable[source], r=real)
