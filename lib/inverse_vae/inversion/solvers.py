"""Box-constrained least squares (the layer-wise solve) and the search in latent space behind optimize
(Adam, per-image L-BFGS, Levenberg-Marquardt, trust-region Newton, SciPy's peers), all images at once
with batched restarts and retries (Bora et al. 2017); chunks only bound memory. Objectives: BCE + prior
(Adam, L-BFGS), 1/2 ||D(z) - x||^2 + prior (LM, Newton; Newton's objective="bce" at prior weight 1: MAP)."""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from ..core.table import box_bounds
from ..errors import StudyError
from .peer import scipy_least_squares, scipy_map
from .plain import bce, forward, forward_jacobian, images, latent_dim, nan_where_unusable, plain_layers, require_bernoulli
from .timing import MethodResult, Recorder, best_restart, record_bce, timed

__all__ = ["box_least_squares", "optimize"]


def _hinged(residual: torch.Tensor, lower: torch.Tensor | None, upper: torch.Tensor | None) -> torch.Tensor:
    """Residual W h - t with one-sided rows zeroed where their inequality holds."""
    if lower is not None:  # rows with W h >= t: only a shortfall counts
        residual = torch.where(lower, residual.clamp(max=0), residual)
    if upper is not None:  # rows with W h <= t: only an excess counts
        residual = torch.where(upper, residual.clamp(min=0), residual)
    return residual


def box_least_squares(W: torch.Tensor, targets: torch.Tensor, bound=None, *,
                      lower_mask: torch.Tensor | None = None, upper_mask: torch.Tensor | None = None,
                      iters: int = 300, tol: float = 1e-10) -> tuple[torch.Tensor, int]:
    """min_h 1/2 sum rho(W h - t), h in the box (low, high) or None, per row of targets (N, m): rho = r^2, on
    lower_mask rows only r < 0, on upper_mask rows only r > 0. Batched FISTA with adaptive restart, from the
    clamped least-squares solution, until a step is below tol (1 + ||h||) (tol floored at rounding noise)."""
    dtype = targets.dtype
    W = W.to(dtype=dtype, device=targets.device)
    box = box_bounds(bound, dtype)

    def project(h):
        return h if box is None else h.clamp(*box)

    w64 = W.double()
    lipschitz = float(torch.linalg.matrix_norm(w64, 2)) ** 2
    tol = max(tol, 4 * torch.finfo(dtype).eps)
    out = project(targets @ torch.linalg.pinv(w64).to(dtype).T).clone()
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


def _plus_prior(cost: torch.Tensor, z: torch.Tensor, prior_weight: float) -> torch.Tensor:
    return cost + 0.5 * prior_weight * (z * z).sum(1) if prior_weight else cost


def _with_prior(cost, matrix, grad, z, prior_weight):
    """The prior added to a cost, its curvature matrices (n, d, d) and its gradients (residuals sqrt(w) z)."""
    if not prior_weight:
        return cost, matrix, grad
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return _plus_prior(cost, z, prior_weight), matrix + prior_weight * eye, grad + prior_weight * z


def _objective(layers, z, x, prior_weight: float) -> torch.Tensor:
    """Per-image BCE + prior_weight * ||z||^2 / 2 (Adam's and L-BFGS')."""
    return _plus_prior(bce(layers, z, x), z, prior_weight)


def _adam(layers, z0, x, rec, *, steps, lr, prior_weight, record_every):
    """Adam on the summed objective: exact per image, since Adam's update is elementwise."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        objective = _objective(layers, z, x, prior_weight)
        objective.sum().backward()
        if step % record_every == 0:
            record_bce(rec, step, layers, z, x, objective)
        opt.step()
    z = z.detach()
    with torch.no_grad():
        final = _objective(layers, z, x, prior_weight)
    record_bce(rec, steps, layers, z, x, final)
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


def _lbfgs(layers, z0, x, rec, *, steps, prior_weight, record_every):
    """L-BFGS with its own curvature pairs (10) and Armijo line search per image (torch's LBFGS would share
    one); an image stops on a step below xtol (||z|| + xtol), xtol = eps^(2/3), or when no step lowers its
    objective (BCE's rounding, its minimum being far from 0, ends the search near sqrt(eps) relative)."""
    n, d = z0.shape
    memory = 10
    xtol = torch.finfo(z0.dtype).eps ** (2 / 3)
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
            for _ in range(30):
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
            record_bce(rec, it + 1, layers, z, x, value)
        if not active.any():
            done_at = it + 1
            break
    record_bce(rec, done_at, layers, z, x, value)
    return z, done_at, value, {"converged": ~active}


def _cost(layers, z, x, prior_weight, chunk, objective="least_squares"):
    """A trial point's objective alone, in chunks: 1/2||D(z) - x||^2 or BCE (from the logits), + prior."""
    def head(zc, xc):
        return bce(layers, zc, xc) if objective == "bce" else 0.5 * ((forward(layers, zc) - xc) ** 2).sum(1)

    with torch.no_grad():
        cost = torch.cat([head(zc, xc) for zc, xc in zip(z.split(chunk), x.split(chunk))])
    return _plus_prior(cost, z, prior_weight)


def _lm_terms(layers, z, x, prior_weight, chunk):
    """Per sample: cost 1/2||D(z) - x||^2 (+ prior), J^T J (n, d, d) and J^T r (n, d), in chunks."""
    costs, normals, grads = [], [], []
    for zc, xc in zip(z.split(chunk), x.split(chunk)):
        y, jac_t = forward_jacobian(layers, zc)
        r = y - xc
        costs.append(0.5 * (r * r).sum(1))
        normals.append(jac_t @ jac_t.mT)
        grads.append((jac_t @ r[:, :, None])[:, :, 0])
    return _with_prior(torch.cat(costs), torch.cat(normals), torch.cat(grads), z, prior_weight)


def _lm_step(normal, grad, lam):
    """Solve (J^T J + lam D) dz = -J^T r per sample in float64, D = mean(diag(J^T J)) I: Marquardt's
    diag(J^T J) barely damps a saturated latent direction, so its steps keep failing and the sample
    creeps. A floor keeps D positive where the decoder ignores a latent direction."""
    normal, grad = normal.double(), grad.double()
    diag = torch.diagonal(normal, dim1=1, dim2=2)
    floor = 1e-12 * diag.amax(1, keepdim=True) + torch.finfo(torch.float64).tiny
    scale = diag.mean(1, keepdim=True).expand_as(diag)
    damped = normal + torch.diag_embed(lam.double()[:, None] * scale.clamp_min(floor) + floor)
    step, _ = torch.linalg.solve_ex(damped, -grad)
    return step


def _lm(layers, z0, x, rec, *, steps, prior_weight, record_every, chunk=2048):
    """Levenberg-Marquardt on r = D(z) - x (pixel residuals weigh a saturated pixel by its vanishing
    Jacobian row, logit residuals would blow it up), per sample damping: lambda / 3 on a step that lowers
    the cost, * 4 otherwise. A sample stops after an accepted step below xtol (||z|| + xtol),
    xtol = eps^(2/3), or 8 rejections in a row (its cost at rounding level)."""
    xtol = torch.finfo(z0.dtype).eps ** (2 / 3)
    z = z0.clone()
    n = z.shape[0]
    with torch.no_grad():
        cost, normal, grad = _lm_terms(layers, z, x, prior_weight, chunk)
        lam = torch.full((n,), 1e-3, dtype=torch.float64, device=z.device)
        rejects = torch.zeros(n, dtype=torch.long, device=z.device)
        active = torch.arange(n, device=z.device)
        it = 0
        while it < steps and active.numel():
            it += 1
            step = _lm_step(normal[active], grad[active], lam[active]).to(z.dtype)
            trial = z[active] + step
            trial_cost = _cost(layers, trial, x[active], prior_weight, chunk)
            ok = trial_cost < cost[active]  # False for nan
            accepted, rejected = active[ok], active[~ok]
            z[accepted], cost[accepted] = trial[ok], trial_cost[ok]
            lam[accepted] = (lam[accepted] / 3).clamp_min(1e-15)
            lam[rejected] *= 4
            rejects[accepted] = 0
            rejects[rejected] += 1
            small = ok & (step.norm(dim=1) <= xtol * (z[active].norm(dim=1) + xtol))
            active = active[~(small | (rejects[active] >= 8))]
            refresh = active[torch.isin(active, accepted)]  # moved and still running: new J
            if refresh.numel():
                _, normal[refresh], grad[refresh] = _lm_terms(layers, z[refresh], x[refresh], prior_weight, chunk)
            if it % record_every == 0:
                record_bce(rec, it, layers, z, x, cost)
    record_bce(rec, it, layers, z, x, cost)
    converged = torch.ones(n, dtype=torch.bool, device=z.device)
    converged[active] = False
    return z, it, cost, {"converged": converged, "lambda": lam}


def _second_derivative(layer, a: torch.Tensor) -> torch.Tensor:
    """f''(a) elementwise for an activation, by autograd through the table's f'(a) (0 where f' is constant)."""
    with torch.enable_grad():
        a = a.detach().requires_grad_(True)
        slope = layer.kind.derivative(layer, a, layer.forward(a))
        if not slope.requires_grad:
            return torch.zeros_like(a)
        (curvature,) = torch.autograd.grad(slope.sum(), a)
    return curvature


def _newton_head(h, x, objective: str, head):
    """(cost, gradient, curvature or None: the identity) of the loss at the head h: 1/2||h - x||^2 at
    h = D(z), or for bce BCE at the logits h = a, gradient s - x, curvature diag(s (1 - s)), s = the Bernoulli
    head's forward(a)."""
    if objective == "bce":
        s = head.forward(h)
        return F.binary_cross_entropy_with_logits(h, x, reduction="none").sum(1), s - x, s * (1 - s)
    residual = h - x
    return 0.5 * (residual * residual).sum(1), residual, None


def _newton_chunk(layers, z, x, objective: str = "least_squares"):
    """Cost, Hessian (n, d, d), gradient (n, d) of _newton_head's loss: J^T W J (W the head's curvature)
    plus sum_k r_k Hess h_k = sum over activations of A^T diag(adjoint f''(a)) A (A: the
    Jacobian of the activation's input)."""
    head = layers[-1]
    if objective == "bce":
        layers = layers[:-1]  # the head is the logits: the Bernoulli head is inside the loss
    inputs, h = [], z
    for layer in layers:
        inputs.append(h)
        h = layer.forward(h)
    cost, residual, curvature = _newton_head(h, x, objective, head)
    adjoints, adjoint = [None] * len(layers), residual  # d(r . h)/d(output of layer i)
    for i in reversed(range(len(layers))):
        layer, a = layers[i], inputs[i]
        adjoints[i] = adjoint
        if layer.kind.is_linear:
            adjoint = adjoint @ layer.weight
        elif layer.kind.derivative is not None:
            adjoint = adjoint * layer.kind.derivative(layer, a, layer.forward(a))
    n, d = z.shape
    jac_t = torch.eye(d, dtype=z.dtype, device=z.device).expand(n, d, d)
    hessian = torch.zeros(n, d, d, dtype=z.dtype, device=z.device)
    for layer, a, adj in zip(layers, inputs, adjoints):
        if layer.kind.is_linear:
            jac_t = (jac_t.reshape(n * d, jac_t.shape[2]) @ layer.weight.T).reshape(n, d, layer.weight.shape[0])
        elif layer.kind.derivative is not None:
            hessian = hessian + (jac_t * (adj * _second_derivative(layer, a))[:, None, :]) @ jac_t.mT
            jac_t = jac_t * layer.kind.derivative(layer, a, layer.forward(a))[:, None, :]
    gauss_newton = jac_t @ jac_t.mT if curvature is None else (jac_t * curvature[:, None, :]) @ jac_t.mT
    return cost, hessian + gauss_newton, adjoint


def _newton_terms(layers, z, x, prior_weight, chunk, objective: str = "least_squares"):
    """Per sample: cost (+ prior), Hessian, gradient; in chunks."""
    parts = [_newton_chunk(layers, zc, xc, objective) for zc, xc in zip(z.split(chunk), x.split(chunk))]
    cost, hessian, grad = (torch.cat(values) for values in zip(*parts))
    return _with_prior(cost, hessian, grad, z, prior_weight)


def _trust_step(hessian, grad, radius, iters: int = 30):
    """The exact trust-region step per sample (More & Sorensen 1983) via eigh, in float64: s = -(H + mu I)^-1 g,
    mu >= max(0, -lambda_min) by Newton's method on 1/||s(mu)|| (monotone from the left) unless the Newton
    step fits; in the hard case (g orthogonal to the lowest eigenvector) the rest of the radius goes along
    it. Returns (step, predicted reduction)."""
    hessian, grad, radius = hessian.double(), grad.double(), radius.double()
    lam, vectors = torch.linalg.eigh(hessian)
    gq = (vectors.mT @ grad[:, :, None])[:, :, 0]
    floor = (-lam[:, 0]).clamp_min(0) + 1e-12 * lam.abs().amax(1) + torch.finfo(torch.float64).tiny
    newton = (lam[:, 0] > 0) & ((gq / lam).norm(dim=1) <= radius)
    mu = torch.where(newton, 0.0, floor)
    for _ in range(iters):
        denom = lam + mu[:, None]
        s2, s3 = ((gq / denom) ** 2).sum(1), (gq * gq / denom**3).sum(1)
        update = s2 / s3 * (s2.sqrt() - radius) / radius
        mu = torch.where(newton, mu, torch.maximum(mu + update, floor))
    sq = -gq / (lam + mu[:, None])
    rest = (sq[:, 1:] ** 2).sum(1)
    hard = ~newton & (lam[:, 0] < 0) & (sq.norm(dim=1) < radius)
    fill = torch.where(sq[:, 0] >= 0, 1.0, -1.0) * (radius**2 - rest).clamp_min(0).sqrt()
    sq[:, 0] = torch.where(hard, fill, sq[:, 0])
    step = (vectors @ sq[:, :, None])[:, :, 0]
    predicted = -((grad * step).sum(1) + 0.5 * (step[:, None, :] @ hessian @ step[:, :, None])[:, 0, 0])
    return step, predicted


def _newton_tr(layers, z0, x, rec, *, steps, prior_weight, record_every, chunk=2048, objective="least_squares"):
    """Trust-region Newton per sample on 1/2||D(z) - x||^2 (or BCE) + prior with the exact Hessian (the Gauss-Newton
    matrix is bench/extra_solvers.py's diagnostic). Per sample radius: accept if rho = actual / predicted > 1e-4,
    / 4 if rho < 1/4, * 2 if rho > 3/4 at the boundary; stop on ||g|| <= gtol cost, relative reductions <= 10 eps,
    or a step below xtol (||z|| + xtol), gtol = xtol = eps^(2/3)."""
    if objective not in ("least_squares", "bce"):
        raise StudyError(f"newton_tr: objective must be one of least_squares, bce; got {objective!r}")
    if objective == "bce":
        require_bernoulli(layers, "newton_tr objective 'bce'")
    eps = torch.finfo(z0.dtype).eps
    gtol = xtol = eps ** (2 / 3)
    ftol = 10 * eps
    z = z0.clone()
    n = z.shape[0]
    with torch.no_grad():
        cost, hess, grad = _newton_terms(layers, z, x, prior_weight, chunk, objective)
        radius = torch.full((n,), 1.0, dtype=torch.float64, device=z.device)
        counts = torch.zeros(n, dtype=torch.long, device=z.device)
        usable = torch.isfinite(cost) & torch.isfinite(grad).all(1) & torch.isfinite(hess).flatten(1).all(1)
        active = usable.nonzero()[:, 0]
        it = 0
        while it < steps and active.numel():
            it += 1
            step, predicted = _trust_step(hess[active], grad[active], radius[active])
            trial = z[active] + step.to(z.dtype)
            trial_cost = _cost(layers, trial, x[active], prior_weight, chunk, objective)
            actual = (cost[active] - trial_cost).double()
            ok = (actual > 1e-4 * predicted) & (predicted > 0)  # False for nan
            length = step.norm(dim=1)
            shrink, grow = actual < 0.25 * predicted, (actual > 0.75 * predicted) & (length > 0.99 * radius[active])
            radius[active] = torch.where(shrink | ~ok, 0.25 * length, torch.where(grow, 2 * radius[active], radius[active]))
            accepted = active[ok]
            z[accepted] = trial[ok]
            counts[active] += 1
            if accepted.numel():
                cost[accepted], hess[accepted], grad[accepted] = _newton_terms(
                    layers, z[accepted], x[accepted], prior_weight, chunk, objective)
            c = cost[active]  # a relative gradient test: near a zero residual, step and cost tests decide
            flat = ok & (actual <= ftol * c) & (predicted <= ftol * c)
            tiny_step = step.norm(dim=1) <= xtol * (z[active].norm(dim=1) + xtol)
            active = active[~((grad[active].norm(dim=1) <= gtol * c) | flat | tiny_step)]
            if it % record_every == 0:
                record_bce(rec, it, layers, z, x, cost)
    record_bce(rec, it, layers, z, x, cost)
    converged = usable.clone()
    converged[active] = False
    return z, it, cost, {"converged": converged, "iterations": counts, "radius": radius}


_SOLVERS = {"adam": _adam, "lbfgs": _lbfgs, "lm": _lm, "newton_tr": _newton_tr, "scipy_lm": scipy_least_squares,
            "scipy_map": scipy_map}
# scipy_lm: steps bounds the function evaluations per image; scipy_map: the L-BFGS-B iterations
_DEFAULT_STEPS = {"adam": 1000, "lbfgs": 200, "lm": 100, "newton_tr": 200, "scipy_lm": 2000, "scipy_map": 2000}


def _initial_latents(init, restarts: int, n: int, d: int, seed: int, dtype, device) -> torch.Tensor:
    """(restarts * N, d) starts: N(0, I) from a seeded CPU generator (same on every device), init (N, d) the first."""
    generator = torch.Generator().manual_seed(seed)
    z0 = torch.randn(restarts, n, d, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    if init is not None:
        init = torch.as_tensor(init).to(dtype=dtype, device=device)
        if init.shape != (n, d):
            raise StudyError(f"init must have shape ({n}, {d}), got {tuple(init.shape)}")
        z0[0] = init
        if not torch.isfinite(z0).all():
            raise StudyError("init contains inf or nan")
    return z0.reshape(restarts * n, d)


def _best_of(solver, layers, z0, x, restarts: int, rec: Recorder, **solver_options) -> tuple[dict, int, torch.Tensor]:
    """Run solver on (restarts * N) starts: ({"objective", "z", "bce", "restart", extras} at each image's
    best restart, iterations, objective of every restart (restarts, N))."""
    xs = x.repeat(restarts, 1)
    z, iterations, objective, extra = solver(layers, z0, xs, rec, **solver_options)
    with torch.no_grad():
        per_image_bce = bce(layers, z, xs)
    restart = torch.arange(restarts, device=z.device).repeat_interleave(x.shape[0])
    values = {"z": z, "bce": per_image_bce, "restart": restart, **extra}
    best = best_restart(objective, restarts, *values.values())
    return {"objective": best[0], **dict(zip(values, best[1:]))}, iterations, objective.reshape(restarts, -1)


def optimize(decoder: nn.Sequential, x: torch.Tensor, *, method: str = "adam", steps: int | None = None,
             lr: float | None = None, restarts: int = 1, prior_weight: float = 0.0, init: torch.Tensor | None = None,
             seed: int = 0, dtype: torch.dtype | None = None, record_every: int | None = None,
             retry_above: float | None = None, retries: int = 8, **options) -> MethodResult:
    """Search z per image from `restarts` starts (seeded N(0, I), the first init if given), batched, keeping each
    image's best; options go to the solver. retry_above: images whose best objective stays above it (a local
    minimum, for realizable x) get `retries` fresh starts. info: per image "objective", "bce", "restart"."""
    if method not in _SOLVERS:
        raise StudyError(f"unknown optimize method {method!r}; known: {', '.join(_SOLVERS)}")
    if lr is not None and method != "adam":
        raise StudyError(f"lr sets Adam's step size; {method} chooses its own steps")
    # options go to the solver: one it lacks is a typo, said in one line rather than a TypeError
    own = [k for k, v in inspect.signature(_SOLVERS[method]).parameters.items()
           if v.kind is v.KEYWORD_ONLY and k not in ("steps", "lr", "prior_weight", "record_every")]
    if set(options) - set(own):
        raise StudyError(f"{method} has no option {', '.join(sorted(set(options) - set(own)))} "
                         f"(its own: {', '.join(own) or 'none'})")
    steps = _DEFAULT_STEPS[method] if steps is None else int(steps)
    record_every = (10 if method == "adam" else 1) if record_every is None else int(record_every)
    if steps < 0 or restarts < 1 or retries < 1 or record_every < 1 or prior_weight < 0:
        raise StudyError(f"need steps >= 0, restarts >= 1, retries >= 1, record_every >= 1, prior_weight >= 0; "
                         f"got {steps}, {restarts}, {retries}, {record_every}, {prior_weight}")
    layers, dtype, device = plain_layers(decoder, dtype)
    x = images(layers, x, dtype, device)
    n, d = x.shape[0], latent_dim(layers)
    solver = _SOLVERS[method]
    solver_options = dict(steps=steps, prior_weight=prior_weight, record_every=record_every, **options)
    if method == "adam":
        solver_options["lr"] = 0.01 if lr is None else lr

    def body(rec):
        z0 = _initial_latents(init, restarts, n, d, seed, dtype, device)
        best, iterations, per_restart = _best_of(solver, layers, z0, x, restarts, rec, **solver_options)
        no_retry = torch.zeros(n, dtype=torch.bool, device=device)
        retried = no_retry if retry_above is None else ~(best["objective"] <= retry_above)  # nan too
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

    result = timed(device, body, restarts)
    # A non-finite objective (a nan pixel) leaves the start where it was: report nan, not a latent.
    result.z = nan_where_unusable(result.z, x, result.info["objective"])
    return result
