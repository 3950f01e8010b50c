"""The reference solver a reader trusts: SciPy's least_squares (MINPACK's Levenberg-Marquardt, or
the trust-region reflective method), one image at a time on the CPU, on the study's
least-squares objective 1/2 ||D(z) - x||^2 + prior_weight ||z||^2 / 2 with the analytic Jacobian.

optimize(method="scipy_lm" or "scipy_trf") runs it behind the study's call shape, so notebook 05
and bench/solver_peer.py set the batched solvers beside it on the same images and starts.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .plain import bce, forward, forward_jacobian

TOLERANCE = 1e-12  # xtol, ftol and gtol: converged as far as float64 allows, or out of evaluations


def _problem(layers, xi: torch.Tensor, prior_weight: float):
    """residual(z) and jacobian(z) of one image, numpy in and out (the prior as residuals sqrt(w) z)."""
    root = prior_weight ** 0.5

    def residual(z):
        r = (forward(layers, torch.from_numpy(z)[None])[0] - xi).numpy()
        return np.concatenate([r, root * z]) if prior_weight else r

    def jacobian(z):
        jac = forward_jacobian(layers, torch.from_numpy(z)[None])[1][0].T.numpy()
        return np.vstack([jac, root * np.eye(z.size)]) if prior_weight else jac

    return residual, jacobian


def scipy_least_squares(layers, z0, x, rec, *, steps, prior_weight, record_every, method: str = "lm"):
    """SciPy's least_squares from each start, per image, in float64 on the CPU (one thread: an
    image's evaluations are too small for more); steps bounds the function evaluations.

    Returns (z, most evaluations any image used, final objective, {"converged", "iterations"})
    on z0's device; an image converged when SciPy stopped on a tolerance, not on the budget.
    """
    import scipy.optimize

    cpu = [dataclasses.replace(layer, **{k: getattr(layer, k).to("cpu", torch.float64) for k in ("weight", "bias")
                                         if getattr(layer, k) is not None}) for layer in layers]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    z, costs, evaluations, converged = [], [], [], []
    try:
        for xi, zi in zip(x.detach().cpu().double(), z0.detach().cpu().double()):
            if not bool(torch.isfinite(xi).all()):  # nothing to fit: a nan objective, so optimize reports nan
                z.append(zi.numpy()), costs.append(float("nan")), evaluations.append(0), converged.append(False)
                continue
            residual, jacobian = _problem(cpu, xi, prior_weight)
            found = scipy.optimize.least_squares(residual, zi.numpy(), jac=jacobian, method=method, xtol=TOLERANCE,
                                                 ftol=TOLERANCE, gtol=TOLERANCE, max_nfev=max(int(steps), 1))
            z.append(found.x)
            costs.append(found.cost)
            evaluations.append(found.nfev)
            converged.append(found.status > 0)
    finally:
        torch.set_num_threads(threads)
    out = torch.from_numpy(np.stack(z)).to(dtype=z0.dtype, device=z0.device)
    cost = torch.tensor(costs, dtype=z0.dtype, device=z0.device)
    rec.record(max(evaluations), lambda: bce(layers, out, x), lambda: cost)
    return out, max(evaluations), cost, {"converged": torch.tensor(converged, device=z0.device),
                                         "iterations": torch.tensor(evaluations, device=z0.device)}
