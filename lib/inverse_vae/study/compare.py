"""The methods comparison of notebook 05: every method on the same images, measured the same way.

Real images: D(z_hat) against x per image, the gap to the best any method reached on that image, the
linear probe on z_hat, seconds. Realizable images: latent recovery from float32 and float64 decoder
outputs (the methods compute in float64 on both), each rate with its 95% binomial interval. Noise:
median relative latent error as x = D(z) is perturbed (Lei et al. 2019's protocol). The slow methods
(MethodSpec.slow) may run on the first `slow_n` images only: their intervals are wider, the table shows
them. Each batch of images runs the layer-wise solve once, however many hybrids refine it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..constants import IMAGE_SIZE, RECOVERY_TARGETS, SUCCESS_THRESHOLDS
from ..core.table import ends_in_bernoulli
from ..inversion.chain import DTYPES, realizable
from ..inversion.methods import BUDGET_VS_CONVERGED, MAP, MAP_PEER, METHODS, PEER, SVI, run_method
from ..inversion.plain import forward_jacobian, plain_layers
from ..inversion.posterior import amortization_gap, negative_log_joint, posterior_reason
from ..metrics import latent_recovery, per_image_metrics, rate_bounds, relative_errors
from ..progress import progress
from .applies import WHY_NOT
from .evaluate import encode_means, probe_accuracy
from .sentences import say
from .shared import prior_latents


def _run(name: str, model, x: torch.Tensor, overrides: dict, starts: dict, **extra):
    """METHODS[name] on x, sharing starts with the other methods on the same x."""
    result = run_method(name, None, x, model, starts=starts, **{**overrides.get(name, {}), **extra})
    if not overrides.get(name):  # as a hybrid would compute it: later hybrids may start from it
        starts.setdefault((name, extra.get("dtype")), result)
    return result


def sample_size(name: str, n: int, slow_n: int | None) -> int:
    """How many of n images method `name` runs on: slow_n at most for the slow methods."""
    return min(n, slow_n) if slow_n and METHODS[name].slow else n


def real_comparison(names, model, x: torch.Tensor, labels, probe, overrides: dict,
                    slow_n: int | None = None) -> tuple[dict, dict, dict]:
    """(table, per-image metrics, MethodResults), each keyed by method. A method's gap to the best is
    measured on its own images (the slow ones: the first slow_n), against every method that ran on each."""
    results, per_image, starts = {}, {}, {}
    for name in progress(names, desc="methods on real images"):
        n = sample_size(name, len(x), slow_n)
        results[name] = _run(name, model, x[:n], overrides, starts.setdefault(n, {}))
        with torch.no_grad():
            x_hat = model.decoder(results[name].z.float())
        per_image[name] = per_image_metrics(x_hat, x[:n], bce=ends_in_bernoulli(model.decoder))
    measure = image_measure(per_image[names[0]])
    # per image, the best any method reached on it (nan where none finished it)
    best = pd.DataFrame({name: pd.Series(m[measure]) for name, m in per_image.items()}).min(axis=1).to_numpy()
    table = {}
    for name in names:
        m, r = per_image[name], results[name]
        n = len(m[measure])
        table[name] = {
            "n": n, **{k: float(np.nanmean(v)) for k, v in m.items()},
            "gap_to_best": float(np.nanmean(m[measure] - best[:n])),
            "nonfinite": int(np.isnan(m[measure]).sum()),
            "probe_accuracy": probe_accuracy(probe, r.z, np.asarray(labels)[:n]) if probe else float("nan"),
            "seconds": r.seconds, "images_per_second": n / r.seconds if r.seconds > 0 else float("inf"),
            "iterations": r.iterations, "z_norm_median": float(r.z.double().norm(dim=1).nanmedian()),
        }
        if posterior_reason(model) is None:  # the model's own measure of a latent: how well it explains x
            table[name]["log_joint"] = float(negative_log_joint(model.decoder, r.z, x[:n]).nanmean())
    return table, per_image, results


def posterior_check(model, x: torch.Tensor, results: dict, seed: int) -> dict:
    """The posterior mode against its SciPy reference (within 0.1% of the objective, per image) and against
    the encoder (a lower negative log joint on every image?), and the amortization gap: the ELBO SVI's
    per-image q gains over the encoder's q (Cremer et al. 2018), on the images SVI ran."""
    out = {}
    if MAP in results:
        ours = negative_log_joint(model.decoder, results[MAP].z, x)
        encoder = negative_log_joint(model.decoder, results["encoder"].z, x[: len(results["encoder"].z)])
        out["map_lower_than_encoder"] = float((ours[: len(encoder)] < encoder).double().mean())
        if MAP_PEER in results:
            reference = negative_log_joint(model.decoder, results[MAP_PEER].z, x[: len(results[MAP_PEER].z)])
            out["map_within_0.1%_of_scipy"] = float((ours[: len(reference)] <= reference + 1e-3 * reference.abs())
                                                    .double().mean())
    if SVI in results:
        n = len(results[SVI].z)
        out["amortization_gap"] = amortization_gap(model, x[:n], results[SVI], samples=1000, seed=seed)
    return out


def image_measure(metrics: dict) -> str:
    """The measure methods are ranked by: BCE, or MSE where BCE does not apply (no Bernoulli head)."""
    return "bce" if "bce" in metrics else "mse"


def realizable_comparison(names, model, z: torch.Tensor, overrides: dict,
                          slow_n: int | None = None) -> tuple[dict, dict]:
    """Per method and arithmetic of the decoder's output: latent recovery, each rate with its 95%
    interval (key + "_ci95"); the methods in float64, the slow ones on the first slow_n samples."""
    table, errors = {}, {}
    z = z.double()
    with progress(None, total=len(DTYPES) * len(names), desc="methods on realizable images, both arithmetics") as bar:
        for arithmetic, dtype in DTYPES.items():
            x = realizable(model.decoder, z, dtype)
            starts = {}  # per image count: the slow methods' subset is another batch
            for name in names:
                n = sample_size(name, len(z), slow_n)
                r = _run(name, model, x[:n], overrides, starts.setdefault(n, {}), dtype=torch.float64)
                rec = latent_recovery(r.z, z[:n])
                table.setdefault(name, {})[arithmetic] = {
                    **rec, **{f"{k}_ci95": list(rate_bounds(rec[k], rec["n"])) for k in SUCCESS_THRESHOLDS},
                    "seconds": r.seconds}
                errors[(name, arithmetic)] = relative_errors(r.z, z[:n]).cpu()
                bar.update()
    return table, errors


def noisy_images(decoder, z: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    """x = D(z) + n (float64) with ||n|| = level * ||x|| per image, clipped to [0, 1] after a Bernoulli head."""
    x = realizable(decoder, z, torch.float64)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.device)
    n *= (level * x.norm(dim=1) / n.norm(dim=1))[:, None]
    return (x + n).clamp(0, 1) if ends_in_bernoulli(decoder) else x + n


def noise_robustness(names, model, levels, draws: int, seed: int, overrides: dict,
                     slow_n: int | None = None, latents: torch.Tensor | None = None) -> dict:
    """method -> [median relative latent error at each level]; fresh z ~ N(0, I) and noise per level
    (the slow methods on the first slow_n draws). latents: the z to use instead at every level (its
    first `draws` rows; the autoencoder's encoded test images, N(0, I) not being its distribution)."""
    out = {name: [] for name in names}
    with progress(None, total=len(levels) * len(names), desc="noise levels × methods") as bar:
        for i, level in enumerate(levels):
            if latents is not None:
                z = latents[:draws].double()
            else:
                z = torch.randn(draws, model.latent_dim, generator=torch.Generator().manual_seed(seed + 1000 + i),
                                dtype=torch.float64)
            x = noisy_images(model.decoder, z, level, seed + 2000 + i)
            starts = {}
            for name in names:
                n = sample_size(name, draws, slow_n)
                r = _run(name, model, x[:n], overrides, starts.setdefault(n, {}), dtype=torch.float64)
                out[name].append(float(relative_errors(r.z, z[:n]).median()))
                bar.update()
    return out


def jacobian_singular_values(decoder, z: torch.Tensor) -> torch.Tensor:
    """Singular values (N, d) of dD/dz at each z in float64 (the solvers' forward-mode Jacobian): a
    near-zero smallest value means z is not identifiable from D(z) to working precision."""
    layers, dtype, device = plain_layers(decoder, torch.float64)
    _, jac_t = forward_jacobian(layers, z.to(dtype=dtype, device=device))
    return torch.linalg.svdvals(jac_t).cpu()


def identifiability(decoder, z: torch.Tensor, missed: torch.Tensor) -> dict:
    """Smallest singular value and condition number of the Jacobian, for missed vs recovered samples."""
    s = jacobian_singular_values(decoder, z)
    smallest, cond = s[:, -1], s[:, 0] / s[:, -1]

    def summary(mask):
        if not mask.any():
            return {"n": 0}
        return {"n": int(mask.sum()), "smallest_sv_median": float(smallest[mask].median()),
                "smallest_sv_min": float(smallest[mask].min()), "condition_median": float(cond[mask].median()),
                "condition_max": float(cond[mask].max())}

    return {"missed": summary(missed), "recovered": summary(~missed)}


def best_realizable(names, realizable: dict, errors: dict, decoder, z: torch.Tensor) -> tuple[dict, dict]:
    """Per arithmetic: the method recovering most prior samples, and the decoder Jacobian's
    identifiability at the samples that method still misses vs those it recovers."""
    best_by, identifiable = {}, {}
    for arithmetic, (key, threshold) in RECOVERY_TARGETS.items():
        best = max(names, key=lambda n: realizable[n][arithmetic][key])
        entry = realizable[best][arithmetic]
        best_by[arithmetic] = {"method": best, key: entry[key], "n": entry["n"]}
        if f"{key}_ci95" in entry:
            best_by[arithmetic][f"{key}_ci95"] = entry[f"{key}_ci95"]
        identifiable[arithmetic] = identifiability(decoder, z, errors[(best, arithmetic)] >= threshold)
    return best_by, identifiable


def fast_vs_adam10(real: dict, per_image: dict | None = None) -> dict | None:
    """The best layer-wise or hybrid method on real images against Adam with 10 restarts (Bora et al.'s
    protocol): its loss ratio and speed-up per image, None when either is missing. With per_image, paired:
    on the first n images, those Adam ran on."""
    adam10 = real.get("optimize_adam_10restarts")
    contenders = [n for n in real if n.startswith(("hybrid", "layerwise"))]
    if not adam10 or not contenders:
        return None
    n = adam10.get("n")
    measure = image_measure(adam10)

    def loss(name):
        return float(np.nanmean(per_image[name][measure][:n])) if per_image else real[name][measure]

    def seconds_per_image(name):
        return real[name]["seconds"] / real[name].get("n", 1)

    best = min(contenders, key=loss)
    verdict = {"method": best, f"{measure}_ratio_to_adam10": loss(best) / loss("optimize_adam_10restarts"),
               "speedup_vs_adam10": seconds_per_image("optimize_adam_10restarts") / seconds_per_image(best)}
    return {**verdict, "n_paired": n} if per_image else verdict


# A method "succeeds" at recovering z when it recovers most prior samples: a few samples of a
# thousand either way (one start that happens to land) must not flip the verdict below.
_SUCCEEDS = 0.5


def _has_prior(name: str) -> bool:
    return bool(METHODS[name].options.get("prior_weight"))


def realizable_methods(names) -> list[str]:
    """Those without a prior term, which pulls the solution off the true z by design (projections of real images)."""
    return [n for n in names if not _has_prior(n)]


def applicable_methods(names, model) -> list[str]:
    """All the methods for a VAE; for the autoencoder not those with an N(0, I) prior term, said in one line."""
    dropped = [n for n in names if _has_prior(n)] if not model.variational else []
    if dropped:
        print(say("does_not_apply", why=WHY_NOT["prior"], what=dropped))
    return [n for n in names if n not in dropped]


def noise_methods(real_names) -> list[str]:
    """The realizable methods but Bora's 10 restarts (its cost would dominate six noise levels, and it adds no kind)."""
    return [n for n in realizable_methods(real_names) if "10restarts" not in n]


def _gradient_descent_line(gd: dict, lw: dict, best: str | None) -> str:
    g, w = gd["float64"]["success_1e-6"], lw["float64"]["success_1e-6"]
    verdict = "confirmed" if w >= _SUCCEEDS > g else "half" if w < _SUCCEEDS and g < _SUCCEEDS else "not"
    return say("gradient_descent", gd=gd["float64"], lw=lw["float64"], verdict=verdict, best=best)


def findings(verdict: dict | None, best_by: dict, realizable: dict, converged: dict | None = None,
             samples: str = "prior") -> list[str]:
    """What the comparison shows, in sentences built from its numbers (samples: what the realizable
    latents are, "prior" or, for the autoencoder, "encoded test")."""
    lines = [say("fast_vs_adam10", v=verdict)] if verdict else []
    if converged and converged.get("encoder"):
        lines.append(say("budget_vs_converged", row=converged["encoder"]))
    lines += [say("best_recovers", arithmetic=arithmetic, best=b, key=RECOVERY_TARGETS[arithmetic][0], samples=samples)
              for arithmetic, b in best_by.items()]
    gd, lw = realizable.get("optimize_adam"), realizable.get("layerwise_constrained")
    if gd and lw:
        lines.append(_gradient_descent_line(gd, lw, best_by.get("float64", {}).get("method")))
    return lines


def posterior_findings(real: dict, posterior: dict, projection: str = "hybrid_encoder_newton_tr") -> list[str]:
    """05's sentences on real images: where the pixel-optimal `projection` (no prior) ends, against the posterior
    mode and the encoder (posterior_check's numbers), and the amortization gap; none without a posterior check."""
    if not posterior:
        return []
    gap = posterior.get("amortization_gap")
    lines = [say("posterior_mode", p=real[projection], m=real[MAP], e=real["encoder"],
                 lower=posterior["map_lower_than_encoder"], peer=posterior.get("map_within_0.1%_of_scipy"))]
    return lines + [say("amortization_gap", gap=gap)] if gap else lines


def curves_per_pixel(results: dict) -> dict:
    """Quality-versus-time curves: (seconds per image, mean BCE per pixel) along each method's history
    (per image: the slow methods ran on fewer images)."""
    out = {}
    for name, r in results.items():
        n = len(r.z)
        pts = [(h["seconds"] / n, h["bce"] / IMAGE_SIZE) for h in r.history if h.get("bce") is not None]
        out[name] = pts or [(r.seconds / n, float("nan"))]
    return out


def noise_title(draws: int, slow_n: int | None) -> str:
    slow = f"; the slow methods on {slow_n}" if slow_n and slow_n < draws else ""
    return f"Noise robustness ({draws} draws per level{slow})"


def realizable_frame(realizable: dict) -> pd.DataFrame:
    """The realizable table: one row per (method, arithmetic), each arithmetic's target rate with its interval."""
    rows = {}
    for name, per_arithmetic in realizable.items():
        for arithmetic, v in per_arithmetic.items():
            key = RECOVERY_TARGETS[arithmetic][0]
            low, high = v[f"{key}_ci95"]
            rows[(name, arithmetic)] = {"n": v["n"], **{k: v[k] for k in SUCCESS_THRESHOLDS},
                                        "target": key, "target 95% interval": f"{low:.1%} – {high:.1%}",
                                        "rel_err_median": v["rel_err_median"], "nonfinite": v["nonfinite"],
                                        "seconds": v["seconds"]}
    return pd.DataFrame(rows).T.rename_axis(["method", "outputs"])


def identifiability_frame(best_by: dict, identifiable: dict) -> pd.DataFrame:
    """Per arithmetic: the best method, and the decoder Jacobian at the samples it misses vs recovers."""
    rows = {(arithmetic, which): {"best method": b["method"], **identifiable[arithmetic][which]}
            for arithmetic, b in best_by.items() for which in ("missed", "recovered")}
    return pd.DataFrame(rows).T.rename_axis(["outputs", "samples"])


def budget_vs_converged(real: dict, results: dict) -> dict:
    """Per start (encoder, layer-wise, random): the budget LM against the converged projection on the
    real images (BCE, seconds, the gap), and how often the converged one reaches the reference
    SciPy's cost on the same objective (within 0.1%, per image), when the reference ran."""
    peer = results.get(PEER)
    rows = {}
    for start, (budget, converged) in BUDGET_VS_CONVERGED.items():
        if budget not in real or converged not in real:
            continue
        b, c = real[budget], real[converged]
        row = {"budget": budget, "budget_bce": b["bce"], "budget_seconds": b["seconds"], "converged": converged,
               "converged_bce": c["bce"], "converged_seconds": c["seconds"], "bce_gap": b["bce"] - c["bce"]}
        if peer is not None:  # on the reference's images (the first ones)
            reference = peer.info["objective"].cpu()
            ours = results[converged].info["objective"].cpu()[: len(reference)]
            row["within_0.1%_of_scipy"] = float((ours <= reference + 1e-3 * reference.abs()).double().mean())
            row["scipy_seconds"] = real[PEER]["seconds"]
        rows[start] = row
    return rows


def realizable_latents(run, model, images: torch.Tensor, n: int) -> torch.Tensor:
    """The first n latents (float64) the realizable comparison decodes and inverts: the run's prior sample
    for a VAE, the encoder's latents of the test images for the autoencoder."""
    if model.variational:
        return prior_latents(run, model.latent_dim, n).double()
    return encode_means(model, images[:n]).double()
