"""The reference solvers a reader trusts, one image at a time on the CPU in float64:

* SciPy's least_squares (MINPACK's Levenberg-Marquardt, or the trust-region reflective method) on the
  study's least-squares objective 1/2 ||D(z) - x||^2 + prior_weight ||z||^2 / 2 with the analytic Jacobian;
* SciPy's L-BFGS-B on BCE(D(z), x) summed over pixels (from the logits) + prior_weight ||z||^2 / 2, the
  model's negative log joint at prior_weight 1 (MAP), with the gradient by autograd: independent of the
  study's hand-written Jacobian and Hessian, which the batched Newton solver it checks relies on.

optimize(method="scipy_lm", "scipy_trf" or "scipy_map") runs them behind the study's call shape, so
notebook 05 and bench/solver_peer.py, bench/posterior_peer.py set the batched solvers beside them on the
same images and starts.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StudyError
from .plain import bce, forward, forward_jacobian

TOLERANCE = 1e-12  # xtol, ftol and gtol: converged as far as float64 allows, or out of evaluations
MAP_FTOL, MAP_GTOL = 1e-15, 1e-9  # L-BFGS-B: relative decrease of the objective, largest gradient entry


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


def _each_image(layers, z0, x, rec, solve_one):
    """solve_one(cpu layers, x_i, z0_i) -> (z, cost, evaluations, converged) for each image, in float64 on
    the CPU with one thread (an image's evaluations are too small for more).

    Returns (z, most evaluations any image used, final objective, {"converged", "iterations"}) on z0's
    device. An image with a non-finite pixel is not fitted: its objective is nan, so optimize reports nan.
    """
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
            found = solve_one(cpu, xi, zi)
            z.append(found[0])
            costs.append(found[1])
            evaluations.append(found[2])
            converged.append(found[3])
    finally:
        torch.set_num_threads(threads)
    out = torch.from_numpy(np.stack(z)).to(dtype=z0.dtype, device=z0.device)
    cost = torch.tensor(costs, dtype=z0.dtype, device=z0.device)
    rec.record(max(evaluations), lambda: bce(layers, out, x), lambda: cost)
    return out, max(evaluations), cost, {"converged": torch.tensor(converged, device=z0.device),
                                         "iterations": torch.tensor(evaluations, device=z0.device)}


def scipy_least_squares(layers, z0, x, rec, *, steps, prior_weight, record_every, method: str = "lm"):
    """SciPy's least_squares from each start, per image (_each_image); steps bounds the function
    evaluations. An image converged when SciPy stopped on a tolerance, not on the budget."""
    import scipy.optimize

    def solve_one(cpu, xi, zi):
        residual, jacobian = _problem(cpu, xi, prior_weight)
        found = scipy.optimize.least_squares(residual, zi.numpy(), jac=jacobian, method=method, xtol=TOLERANCE,
                                             ftol=TOLERANCE, gtol=TOLERANCE, max_nfev=max(int(steps), 1))
        return found.x, found.cost, found.nfev, found.status > 0

    return _each_image(layers, z0, x, rec, solve_one)


def _map_problem(layers, xi: torch.Tensor, prior_weight: float):
    """value_and_grad(z) of one image's BCE (summed, from the logits) + prior_weight ||z||^2 / 2, numpy in and
    out, the gradient by autograd."""
    head = layers[:-1]  # the logits: the final Sigmoid is inside the loss

    def value_and_grad(z):
        zt = torch.from_numpy(z)[None].requires_grad_(True)
        value = F.binary_cross_entropy_with_logits(forward(head, zt), xi[None], reduction="sum")
        value = value + 0.5 * prior_weight * (zt * zt).sum()
        (grad,) = torch.autograd.grad(value, zt)
        return float(value.detach()), grad[0].numpy()

    return value_and_grad


def scipy_map(layers, z0, x, rec, *, steps, prior_weight, record_every):
    """SciPy's L-BFGS-B from each start, per image (_each_image), on BCE + prior_weight ||z||^2 / 2 (the
    negative log joint at prior_weight 1: MAP); steps bounds its iterations. Tolerances MAP_FTOL, MAP_GTOL:
    converged as far as float64 allows. An image converged unless it ran out of iterations or evaluations."""
    import scipy.optimize

    if layers[-1].kind.name != "sigmoid":
        raise StudyError("scipy_map minimizes BCE, which needs a decoder ending in Sigmoid (a Bernoulli "
                         f"likelihood); this one ends in {layers[-1].kind.name}")
    options = {"maxiter": max(int(steps), 1), "maxfun": 20 * max(int(steps), 1), "ftol": MAP_FTOL, "gtol": MAP_GTOL}

    def solve_one(cpu, xi, zi):
        found = scipy.optimize.minimize(_map_problem(cpu, xi, prior_weight), zi.numpy(), jac=True,
                                        method="L-BFGS-B", options=options)
        return found.x, float(found.fun), found.nfev, found.status != 1  # 1: out of iterations or evaluations

    return _each_image(layers, z0, x, rec, solve_one)
