"""Solver variants only the benches compare, kept out of lib/ so that the study has one code path (issue #36).
Each is the study's own solver with one piece swapped inside a `with` block: the same code, the same stops and
the same call through optimize, but for that piece."""
from __future__ import annotations

import contextlib
from unittest import mock


@contextlib.contextmanager
def gauss_newton():
    """optimize(method="newton_tr") on the Gauss-Newton matrix J^T W J instead of the exact Hessian: every
    activation's f'' taken as 0 drops the second-order term sum_k r_k Hess h_k (what that term is worth).
    The zero term is still computed, so an iteration costs about what the exact Hessian's does."""
    import torch

    from inverse_vae.inversion import solvers

    with mock.patch.object(solvers, "_second_derivative", lambda layer, a: torch.zeros_like(a)):
        yield


@contextlib.contextmanager
def scipy_trf():
    """optimize(method="scipy_lm") with SciPy's trust-region reflective least_squares ("trf") in place of
    MINPACK's Levenberg-Marquardt ("lm"): same residuals, Jacobian, tolerances and evaluation budget."""
    import scipy.optimize

    least_squares = scipy.optimize.least_squares

    def trf(*args, **kwargs):
        return least_squares(*args, **{**kwargs, "method": "trf"})

    with mock.patch.object(scipy.optimize, "least_squares", trf):
        yield


def run_with(variant, solve, *args, **kwargs):
    """solve(*args, **kwargs) with variant (gauss_newton or scipy_trf) swapped in."""
    with variant():
        return solve(*args, **kwargs)
