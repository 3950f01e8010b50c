"""The reference solvers a reader trusts, image by image in float64 on the CPU behind optimize's call shape:
SciPy's least_squares on the least-squares objective, and its L-BFGS-B on BCE + prior (MAP) with autograd's
gradient, independent of the hand-written Jacobian and Hessian the batched Newton solver relies on."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from .plain import bce, forward, forward_jacobian, require_bernoulli

_TOLERANCE = 1e-12  # xtol, ftol and gtol: converged as far as float64 allows, or out of evaluations
_MAP_FTOL, _MAP_GTOL = 1e-15, 1e-9  # L-BFGS-B: relative decrease of the objective, largest gradient entry


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
    """solve_one(cpu layers, x_i, z0_i) -> (z, cost, evaluations, converged) per image, on one thread (an image
    is too small for more); an image with a non-finite pixel gets a nan objective, so optimize reports nan."""
    cpu = [dataclasses.replace(layer, **{k: getattr(layer, k).to("cpu", torch.float64) for k in ("weight", "bias")
                                         if getattr(layer, k) is not None}) for layer in layers]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = [solve_one(cpu, xi, zi) if bool(torch.isfinite(xi).all()) else (zi.numpy(), float("nan"), 0, False)
                 for xi, zi in zip(x.detach().cpu().double(), z0.detach().cpu().double())]
    finally:
        torch.set_num_threads(threads)
    z, costs, evaluations, converged = zip(*found)
    out = torch.from_numpy(np.stack(z)).to(dtype=z0.dtype, device=z0.device)
    cost = torch.tensor(costs, dtype=z0.dtype, device=z0.device)
    rec.record(max(evaluations), lambda: bce(layers, out, x), lambda: cost)
    return out, max(evaluations), cost, {"converged": torch.tensor(converged, device=z0.device),
                                         "iterations": torch.tensor(evaluations, device=z0.device)}


def scipy_least_squares(layers, z0, x, rec, *, steps, prior_weight, record_every):
    """SciPy's least_squares (MINPACK LM) per image, steps bounding its evaluations; converged: it stopped on a
    tolerance."""
    import scipy.optimize

    def solve_one(cpu, xi, zi):
        residual, jacobian = _problem(cpu, xi, prior_weight)
        found = scipy.optimize.least_squares(residual, zi.numpy(), jac=jacobian, method="lm", xtol=_TOLERANCE,
                                             ftol=_TOLERANCE, gtol=_TOLERANCE, max_nfev=max(int(steps), 1))
        return found.x, found.cost, found.nfev, found.status > 0

    return _each_image(layers, z0, x, rec, solve_one)


def _map_problem(layers, xi: torch.Tensor, prior_weight: float):
    """value_and_grad(z) of one image's BCE (from the logits) + prior_weight ||z||^2 / 2, numpy in and out."""
    head = layers[:-1]  # the logits: the Bernoulli head is inside the loss

    def value_and_grad(z):
        zt = torch.from_numpy(z)[None].requires_grad_(True)
        value = F.binary_cross_entropy_with_logits(forward(head, zt), xi[None], reduction="sum")
        value = value + 0.5 * prior_weight * (zt * zt).sum()
        (grad,) = torch.autograd.grad(value, zt)
        return float(value.detach()), grad[0].numpy()

    return value_and_grad


def scipy_map(layers, z0, x, rec, *, steps, prior_weight, record_every):
    """SciPy's L-BFGS-B per image on BCE + prior_weight ||z||^2 / 2, steps bounding its iterations, tolerances
    _MAP_FTOL and _MAP_GTOL; converged unless it ran out of iterations or evaluations."""
    import scipy.optimize

    require_bernoulli(layers, "scipy_map minimizes BCE, which")
    options = {"maxiter": max(int(steps), 1), "maxfun": 20 * max(int(steps), 1), "ftol": _MAP_FTOL, "gtol": _MAP_GTOL}

    def solve_one(cpu, xi, zi):
        found = scipy.optimize.minimize(_map_problem(cpu, xi, prior_weight), zi.numpy(), jac=True,
                                        method="L-BFGS-B", options=options)
        return found.x, float(found.fun), found.nfev, found.status != 1  # 1: out of iterations or evaluations

    return _each_image(layers, z0, x, rec, solve_one)
