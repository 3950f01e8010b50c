"""Projections of real test images onto the decoder's range, against SciPy's least-squares solvers.

Objective, per image, float64: 1/2 ||D(z) - x||^2 + prior_weight ||z||^2 / 2 (the study's LM
entries use prior_weight 0), all solvers from the same start, the encoder mean of the run's
model. Solvers: the study's budget LM (optimize(method="lm"), 100 steps, as hybrid_encoder_lm),
the trust-region Newton solver (method="newton_tr", run to convergence), the same with the
Gauss-Newton matrix in place of the exact Hessian (a diagnostic: what the missing second-order
term costs; extra_solvers.gauss_newton), and SciPy's least_squares "lm" (MINPACK, method="scipy_lm")
and "trf" (extra_solvers.scipy_trf) per image with the analytic Jacobian (forward_jacobian),
tolerances 1e-12, at most --max-nfev evaluations.

Printed per solver: mean final cost, the share of images within 0.1% of the best cost any solver
found for that image (and within 1e-6), seconds per image (batched solvers: the whole batch's time / N),
on how many images it found the best cost (ties within 1e-9 count for each), its median iterations
(SciPy: evaluations), how many images stopped converged, and the largest latent norm it reached.

    .venv/bin/python bench/solver_peer.py [--n 20] [--start 5000] [--device cpu] [--prior-weight 0,0.01]
                                          [--max-nfev 2000] [--table]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable without installing


def load(params: str, start: int, n: int, device_name: str):
    """The run's model and test images start .. start + n - 1 (float64, on the device), and the encoder means."""
    import torch

    import inverse_vae as iv
    from inverse_vae.core.model import resolve_device
    from inverse_vae.inversion import methods
    from inverse_vae.study import shared as splits

    device = resolve_device(device_name)
    run = iv.open_run(params, root=ROOT)
    model = iv.load_model(run.config, run.model_file, device)
    x = splits.test_images(run, log=lambda s: None)[0][start:start + n].reshape(n, -1).to(device, torch.float64)
    z0 = methods.encoder(model, x, dtype=torch.float64).z
    return model.decoder, x, z0, device


def study_solver(decoder, x, z0, prior_weight: float, method: str, steps: int, **options) -> dict:
    """optimize(method=...) on all images at once, from z0, in x's dtype (float64; the decoder's is float32);
    its own clock (MethodResult.seconds)."""
    from inverse_vae.inversion.solvers import optimize

    result = optimize(decoder, x, method=method, steps=steps, init=z0, prior_weight=prior_weight, dtype=x.dtype,
                      **options)
    counts = result.info.get("iterations")
    counts = np.full(len(x), result.iterations) if counts is None else counts.cpu().numpy()
    return {"cost": result.info["objective"].cpu().numpy(), "seconds": result.seconds, "iterations": counts,
            "converged": result.info["converged"].cpu().numpy(), "latent_norm": result.z.norm(dim=1).cpu().numpy()}


def compare(decoder, x, z0, prior_weight: float, max_nfev: int, newton_steps: int) -> dict:
    """Every solver's per-image results on one objective."""
    import torch
    from extra_solvers import gauss_newton, run_with, scipy_trf

    runs = {
        "study lm (100 steps)": lambda: study_solver(decoder, x, z0, prior_weight, "lm", 100),
        "newton_tr": lambda: study_solver(decoder, x, z0, prior_weight, "newton_tr", newton_steps),
        "gauss_newton_tr (diag.)": lambda: run_with(gauss_newton, study_solver, decoder, x, z0, prior_weight,
                                                    "newton_tr", newton_steps),
        # SciPy through the study's own wrapper (inversion/peer.py), as notebook 05 runs it
        "scipy lm": lambda: study_solver(decoder, x, z0, prior_weight, "scipy_lm", max_nfev),
        "scipy trf": lambda: run_with(scipy_trf, study_solver, decoder, x, z0, prior_weight, "scipy_lm", max_nfev),
    }
    study_solver(decoder, x[:2], z0[:2], prior_weight, "newton_tr", 2)  # warm-up (first calls, CUDA context)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return {name: run() for name, run in runs.items()}


def report(results: dict, n: int, prior_weight: float, table: bool) -> None:
    names = list(results)
    costs = np.stack([results[name]["cost"] for name in names])
    best = costs.min(0)
    print(f"\nprior_weight {prior_weight:g}: mean best cost over solvers {best.mean():.4f}")
    print(f"{'solver':<25}{'mean cost':>11}{'within 0.1%':>13}{'within 1e-6':>13}{'s/image':>10}{'best on':>9}"
          f"{'iters/evals':>13}{'converged':>11}{'max |z|':>9}")
    for name in names:
        r = results[name]
        within = float(np.mean(r["cost"] <= best * (1 + 1e-3)))
        norm = f"{r['latent_norm'].max():>9.1f}" if "latent_norm" in r else f"{'':>9}"
        close = float(np.mean(r["cost"] <= best * (1 + 1e-6)))
        print((f"{name:<25}{r['cost'].mean():>11.4f}{within:>13.0%}{close:>13.0%}{r['seconds'] / n:>10.4f}"
              f"{int((r['cost'] <= best * (1 + 1e-9)).sum()):>9}"
              f"{np.median(r['iterations']):>13.0f}{int(r['converged'].sum()):>8}/{n:<2}{norm}").rstrip())
    if table:
        print("image " + "".join(f"{name[:14]:>15}" for name in names))
        for i in range(n):
            print(f"{i:>5} " + "".join(f"{c:>15.5f}" for c in costs[:, i]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="test images")
    parser.add_argument("--start", type=int, default=5000, help="index of the first test image")
    parser.add_argument("--device", default="cpu", help="device of the batched solvers (SciPy runs on the CPU)")
    parser.add_argument("--prior-weight", default="0,0.01", help="comma-separated prior weights, one comparison each")
    parser.add_argument("--max-nfev", type=int, default=2000, help="SciPy's evaluation budget per image")
    parser.add_argument("--newton-steps", type=int, default=200, help="cap on newton_tr's iterations")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--table", action="store_true", help="also print every image's final cost per solver")
    args = parser.parse_args(argv)
    import torch

    decoder, x, z0, device = load(args.params, args.start, args.n, args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, test images "
          f"{args.start}..{args.start + args.n - 1}, float64, start = encoder mean, SciPy max_nfev {args.max_nfev}")
    for weight in (float(w) for w in args.prior_weight.split(",")):
        report(compare(decoder, x, z0, weight, args.max_nfev, args.newton_steps), args.n, weight, args.table)


if __name__ == "__main__":
    main()
