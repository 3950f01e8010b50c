"""MAP of real test images (the posterior's mode) by the study's batched Newton solver, against SciPy.

Objective, per image: BCE(D(z), x) summed over pixels (from the logits) + prior_weight ||z||^2 / 2,
at prior_weight 1 the model's negative log joint (issue #25); all solvers from the same start, the
encoder mean of the run's model. Solvers: the study's trust-region Newton with the exact Hessian
(optimize(method="newton_tr", objective="bce"), the named method map_encoder_newton; in float64 and in
the decoder's float32), the same with the Gauss-Newton matrix J^T diag(s (1 - s)) J (a diagnostic:
what the second-order term is worth; extra_solvers.gauss_newton), and SciPy's L-BFGS-B per image
with the gradient by autograd (method="scipy_map", the named method peer_scipy_map), at most
--max-iter iterations.

Printed per solver: mean final objective, the share of images within 0.1% of the best objective any
solver found for that image (and within 1e-6), seconds per image (batched solvers: the whole batch's
time / N), on how many images it found the best (ties within 1e-9 count for each), its median
iterations (SciPy: evaluations), how many stopped converged, its median ||z||, its BCE per pixel, and
on how many images it lowered the encoder mean's objective. With --probe, also the linear probe's
accuracy on its z (the run's probe, as the notebooks fit and cache it).

    .venv/bin/python bench/posterior_peer.py [--n 200] [--start 0] [--device cpu] [--prior-weight 1]
                                             [--max-iter 2000] [--probe] [--table]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable without installing


def load(params: str, start: int, n: int, device_name: str):
    """The run, its model, test images start .. start + n - 1 (float64, on the device) with their labels,
    and the encoder means."""
    import torch

    import inverse_vae as iv
    from inverse_vae.core.model import resolve_device
    from inverse_vae.inversion import methods
    from inverse_vae.study import shared

    device = resolve_device(device_name)
    run = iv.open_run(params, root=ROOT)
    model = iv.load_model(run.config, run.model_file, device)
    images, labels = shared.test_images(run, log=lambda s: None)
    x = images[start:start + n].reshape(n, -1).to(device, torch.float64)
    z0 = methods.encoder(model, x, dtype=torch.float64).z
    return run, model, x, labels[start:start + n].numpy(), z0


def solve(decoder, x, z0, prior_weight: float, method: str, steps: int, dtype, **options) -> dict:
    """optimize(method=...) on all images at once from z0, in dtype; its own clock (MethodResult.seconds).
    Objective, BCE and ||z|| re-measured in float64."""
    import torch

    from inverse_vae.inversion.posterior import negative_log_joint
    from inverse_vae.inversion.solvers import optimize

    result = optimize(decoder, x, method=method, steps=steps, init=z0, prior_weight=prior_weight, dtype=dtype,
                      **options)
    z = result.z.double()
    counts = result.info.get("iterations")
    counts = np.full(len(x), result.iterations) if counts is None else counts.cpu().numpy()
    bce = negative_log_joint(decoder, z, x, dtype=torch.float64) - 0.5 * (z * z).sum(1)
    cost = bce + 0.5 * prior_weight * (z * z).sum(1)
    return {"cost": cost.cpu().numpy(), "seconds": result.seconds, "iterations": counts, "z": z,
            "converged": result.info["converged"].cpu().numpy(), "bce": bce.cpu().numpy()}


def compare(decoder, x, z0, prior_weight: float, max_iter: int, newton_steps: int) -> dict:
    """Every solver's per-image results on one objective."""
    import torch
    from extra_solvers import gauss_newton, run_with

    runs = {
        "newton_tr float64": lambda: solve(decoder, x, z0, prior_weight, "newton_tr", newton_steps, torch.float64,
                                           objective="bce"),
        "newton_tr float32": lambda: solve(decoder, x, z0, prior_weight, "newton_tr", newton_steps, torch.float32,
                                           objective="bce"),
        "gauss_newton_tr (diag.)": lambda: run_with(gauss_newton, solve, decoder, x, z0, prior_weight, "newton_tr",
                                                    newton_steps, torch.float64, objective="bce"),
        # SciPy through the study's own wrapper (inversion/peer.py), as notebook 05 runs it
        "scipy L-BFGS-B": lambda: solve(decoder, x, z0, prior_weight, "scipy_map", max_iter, torch.float64),
    }
    solve(decoder, x[:2], z0[:2], prior_weight, "newton_tr", 2, torch.float64, objective="bce")  # warm-up
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return {name: run() for name, run in runs.items()}


def report(results: dict, start_cost: np.ndarray, n: int, prior_weight: float, accuracy, table: bool) -> None:
    names = list(results)
    costs = np.stack([results[name]["cost"] for name in names])
    best = costs.min(0)
    print(f"\nprior_weight {prior_weight:g}: mean best objective over solvers {best.mean():.4f} "
          f"(encoder mean: {start_cost.mean():.4f})")
    print(f"{'solver':<25}{'mean obj':>10}{'within 0.1%':>13}{'within 1e-6':>13}{'s/image':>10}{'best on':>9}"
          f"{'iters/evals':>13}{'converged':>11}{'med |z|':>9}{'BCE/px':>8}{'<encoder':>10}{'probe':>7}")
    for name in names:
        r = results[name]
        within = float(np.mean(r["cost"] <= best * (1 + 1e-3)))
        close = float(np.mean(r["cost"] <= best * (1 + 1e-6)))
        probe = f"{accuracy(r['z']):>7.1%}" if accuracy else ""
        print(f"{name:<25}{r['cost'].mean():>10.4f}{within:>13.0%}{close:>13.0%}{r['seconds'] / n:>10.4f}"
              f"{int((r['cost'] <= best * (1 + 1e-9)).sum()):>9}{np.median(r['iterations']):>13.0f}"
              f"{int(r['converged'].sum()):>8}/{n:<2}{float(r['z'].norm(dim=1).median()):>9.3g}"
              f"{r['bce'].mean() / 784:>8.4f}{int((r['cost'] < start_cost).sum()):>6}/{n:<3}{probe}")
    if table:
        print("image " + "".join(f"{name[:14]:>15}" for name in names))
        for i in range(n):
            print(f"{i:>5} " + "".join(f"{c:>15.5f}" for c in costs[:, i]))


def probe_accuracy(run, model, labels):
    """z -> the study's linear probe's accuracy on labels (the run's probe, as the notebooks fit and cache it)."""
    from inverse_vae.study.evaluate import probe_accuracy
    from inverse_vae.study.shared import probe as fitted_probe

    probe = fitted_probe(run, model)  # the run's probe, cached like the notebooks' (fitted once)
    return lambda z: probe_accuracy(probe, z, labels)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test images")
    parser.add_argument("--start", type=int, default=0, help="index of the first test image")
    parser.add_argument("--device", default="cpu", help="device of the batched solvers (SciPy runs on the CPU)")
    parser.add_argument("--prior-weight", default="1", help="comma-separated prior weights, one comparison each")
    parser.add_argument("--max-iter", type=int, default=2000, help="SciPy's L-BFGS-B iterations per image")
    parser.add_argument("--newton-steps", type=int, default=200, help="cap on newton_tr's iterations")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--probe", action="store_true", help="also the linear probe's accuracy on each solver's z")
    parser.add_argument("--table", action="store_true", help="also print every image's final objective per solver")
    args = parser.parse_args(argv)
    import torch

    from inverse_vae.inversion.posterior import negative_log_joint

    run, model, x, labels, z0 = load(args.params, args.start, args.n, args.device)
    accuracy = probe_accuracy(run, model, labels) if args.probe else None
    print(f"device {x.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, test images "
          f"{args.start}..{args.start + args.n - 1}, start = encoder mean, SciPy max_iter {args.max_iter}")
    if accuracy:
        print(f"probe accuracy on the encoder means: {accuracy(z0):.1%}")
    for weight in (float(w) for w in args.prior_weight.split(",")):
        start_cost = negative_log_joint(model.decoder, z0, x, dtype=torch.float64)
        start_cost = (start_cost + 0.5 * (weight - 1) * (z0 * z0).sum(1)).cpu().numpy()
        report(compare(model.decoder, x, z0, weight, args.max_iter, args.newton_steps), start_cost, args.n, weight,
               accuracy, args.table)


if __name__ == "__main__":
    main()
