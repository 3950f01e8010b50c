"""Where and why the chain fails on realizable images x = D(z): the forward pass from z gives the truth at every
step, a failed sample is charged to the first step where its relative error reaches the threshold, and the
cause there is, in order: output/hidden_saturated (the true value sits at the range's ends), out_of_domain
(unclamped, pushed outside the inverse's domain), clamped, amplified (the inverse's slope magnified earlier
error), projection (a Linear's pseudo-inverse), other (notebook 03 explains them)."""
from __future__ import annotations

import torch
from torch import nn

from ..constants import ORIGINAL_EPS
from ..errors import StudyError
from ..metrics import quantile, relative_errors
from .chain import InverseChain, Step, forward_trace

__all__ = ["CAUSES", "attribute_failures", "failure_frame"]

CAUSES = ("ok", "output_saturated", "hidden_saturated", "out_of_domain", "clamped", "amplified", "projection", "other")
_CODE = {name: code for code, name in enumerate(CAUSES)}


def attribute_failures(decoder: nn.Sequential, z: torch.Tensor, x: torch.Tensor, *, eps: float | None = ORIGINAL_EPS,
                       dtype: torch.dtype = torch.float64, threshold: float = 1e-6, eps_head: float | None = None,
                       chain: InverseChain | None = None) -> dict:
    """Every sample with relative error >= threshold charged to a layer and a cause (module doc): counts per
    (layer, cause), the error after each step, and per sample rel_err, sample_layer (-1: ok), sample_cause."""
    chain = InverseChain(decoder) if chain is None else chain
    trace = chain.trace(x, dtype=dtype, eps=eps, eps_head=eps_head)
    x_flat = trace[0].arriving
    if z.shape[0] != x_flat.shape[0]:
        raise StudyError(f"z has {z.shape[0]} samples but x has {x_flat.shape[0]}")
    forward = forward_trace(decoder, z, dtype)
    rel = relative_errors(trace[-1].output, z).cpu()
    last = len(decoder) - 1
    n = rel.numel()
    sample_layer = torch.full((n,), -1, dtype=torch.long)
    sample_cause = torch.zeros(n, dtype=torch.long)
    pending = rel >= threshold
    n_failed = int(pending.sum())
    step_errors = []
    for step, arriving, out in trace:
        index = step.index
        truth = (forward[index - 1] if index > 0 else z).to(out.dtype)
        err = relative_errors(out, truth).cpu()
        step_errors.append({"step": step.name, "layer": index, "rel_err_median": quantile(err.sort().values, 0.5),
                            "share_above_threshold": float((err >= threshold).double().mean())})
        crossed = pending & (err >= threshold)
        if not crossed.any():
            continue
        sample_layer[crossed] = index
        y_true = x_flat if index == last else forward[index]
        sample_cause[crossed] = _step_cause(step, index == last, y_true, arriving)[crossed]
        pending &= ~crossed
    sample_cause[pending] = _CODE["other"]
    return {"n": n, "n_failed": n_failed, "threshold": float(threshold), "cause_names": list(CAUSES),
            "counts": _count_causes(decoder, sample_layer, sample_cause), "step_errors": step_errors,
            "rel_err": rel, "sample_layer": sample_layer, "sample_cause": sample_cause}


def _step_cause(step: Step, is_output: bool, y_true: torch.Tensor, y_in: torch.Tensor) -> torch.Tensor:
    """Per-sample cause code for samples whose error crossed the threshold at this step."""
    n, kind = y_in.shape[0], step.kind
    if kind.is_linear or kind.output_range is None:
        return torch.full((n,), _CODE["projection" if kind.is_linear else "other"], dtype=torch.long)
    cause = torch.full((n,), _CODE["amplified"], dtype=torch.long)
    checks = (  # applied in reverse so that the first check listed wins
        ("clamped", kind.clamped(y_in, step.eps)),
        ("out_of_domain", kind.saturated(y_in) if step.eps == 0.0 else torch.zeros(n, dtype=torch.bool)),
        ("output_saturated" if is_output else "hidden_saturated", kind.saturated(y_true.to(y_in.dtype))),
    )
    for name, hit in checks:
        cause[hit.cpu()] = _CODE[name]
    return cause


def _count_causes(decoder: nn.Sequential, layers: torch.Tensor, causes: torch.Tensor) -> list[dict]:
    """One record per (layer, cause) among failures, image side first."""
    failed = causes != _CODE["ok"]
    pairs = torch.stack([layers[failed], causes[failed]], 1)
    if pairs.numel() == 0:
        return []
    unique, counts = pairs.unique(dim=0, return_counts=True)
    records = [{"layer": int(layer), "type": type(decoder[int(layer)]).__name__ if layer >= 0 else None,
                "cause": CAUSES[int(cause)], "count": int(count)}
               for (layer, cause), count in zip(unique.tolist(), counts.tolist())]
    return sorted(records, key=lambda r: (-r["layer"], _CODE[r["cause"]]))


def _failure_table(summaries: dict) -> list[dict]:
    """Flat rows (source, case, layer, type, cause, count, share) from summaries[source][case] carrying
    "failures" (attribution counts) and "n"; for a DataFrame."""
    return [{"source": source, "case": case, **f, "share": f["count"] / s["n"]}
            for source, cases in summaries.items() for case, s in cases.items() for f in s["failures"]]


def failure_frame(summaries: dict):
    """Failure counts, a row per (source, case) (zeros where none failed), a column per (layer, type, cause)."""
    import pandas as pd  # only the notebooks' tables need it

    rows = _failure_table(summaries)
    index = pd.MultiIndex.from_tuples([(s, c) for s, cases in summaries.items() for c in cases], names=["source", "case"])
    if not rows:
        return pd.DataFrame(index=index)
    frame = pd.DataFrame(rows).pivot_table(index=["source", "case"], columns=["layer", "type", "cause"],
                                           values="count", fill_value=0, aggfunc="sum")
    return frame.reindex(index, fill_value=0)
