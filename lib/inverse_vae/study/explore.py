"""The explorer (notebook 98): one image, real or realizable, through the inverse chain of one run's decoder,
layer by layer, beside the encoder and the best inversion, and where its latent lies. A realizable image's
steps show their error and the failure's step and cause (inversion.attribution); a real image has no truth,
so each step shows the share of what arrives outside the values the layer can produce.
"""
from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch

from ..constants import IMAGE_SIDE, ORIGINAL_EPS
from ..errors import StudyError
from ..inversion.attribution import CAUSES, attribute_failures
from ..inversion.chain import DTYPES, InverseChain, realizable
from ..inversion.methods import MAP, run_method
from ..inversion.posterior import posterior_reason
from ..metrics import relative_errors

# The best inversion shown: trust-region Newton from the encoder mean, which recovers realizable z. A real image
# has no preimage: the model's own answer is its posterior mode (MAP), which keeps the latent's meaning where the
# pixel-optimal z runs off to infinity (issue #25); the autoencoder has no posterior, so there the projection
# with the small prior that gives it a finite optimum.
READABLE = 9  # points: the smallest text of the figure, as a notebook shows it (13 inches wide, scaled down)
BEST = {"realizable": "hybrid_encoder_newton_tr", "real": MAP, "real without a posterior": "hybrid_encoder_newton_tr_prior"}


def best_method(model, realizable_image: bool) -> str:
    if realizable_image:
        return BEST["realizable"]
    return BEST["real"] if posterior_reason(model) is None else BEST["real without a posterior"]


_chain = functools.lru_cache(maxsize=16)(InverseChain)  # pseudo-inverses once per decoder: the explorer updates per click


def case(model, x: torch.Tensor, z: torch.Tensor | None = None, *, arithmetic: str = "float64",
         clamp: bool = False) -> dict:
    """Everything the explorer shows for one image x (1, 784), or x = D(z) for a true latent z."""
    _check_case(model, x, z, arithmetic)
    dtype, eps = DTYPES[arithmetic], ORIGINAL_EPS if clamp else 0.0
    if z is not None:
        x = realizable(model.decoder, z, dtype)  # in the chosen arithmetic, as a user would have it
    x = x.reshape(1, -1).to(next(model.parameters()).device)
    chain = _chain(model.decoder)
    trace = chain.trace(x, dtype=dtype, eps=eps)
    latents = {"encoder": run_method("encoder", None, x, model).z, "closed form": trace[-1].output,
               "best": run_method(best_method(model, z is not None), None, x.double(), model).z}
    steps = [{"step": t.step.name, "outside": _outside(t), "nonfinite": int((~torch.isfinite(t.output)).sum())}
             for t in trace]
    out = {"x": x, "latents": latents, "steps": steps, "arithmetic": arithmetic, "clamp": clamp, "z": z}
    if z is not None:
        found = attribute_failures(model.decoder, z.to(dtype), x, eps=eps, dtype=dtype,
                                   threshold=1e-4 if arithmetic == "float32" else 1e-6, chain=chain)
        for step, errors in zip(steps, found["step_errors"]):
            step["rel_err"] = errors["rel_err_median"]
        layer, cause = int(found["sample_layer"][0]), CAUSES[int(found["sample_cause"][0])]
        out["verdict"] = "recovered" if layer < 0 else f"fails at decoder layer {layer} ({cause})"
        out["rel_err"] = {name: float(relative_errors(v.reshape(1, -1).double(), z.double())[0]) for name, v in latents.items()}
    return out


def _check_case(model, x, z, arithmetic) -> None:
    """One StudyError line naming what case() cannot take: an arithmetic it does not know, a z that is not one
    latent of the model, an x that is not one image (the rest of x's checks are the chain's, check_images)."""
    if not isinstance(arithmetic, str) or arithmetic not in DTYPES:
        raise StudyError(f"arithmetic must be one of {', '.join(DTYPES)}, got {arithmetic!r}")
    pixels, d = IMAGE_SIDE * IMAGE_SIDE, model.latent_dim
    name, value, size, shape = ("z", z, d, f"(1, {d})") if z is not None else \
        ("x", x, pixels, f"(1, {pixels}) or (1, 1, {IMAGE_SIDE}, {IMAGE_SIDE})")
    if not isinstance(value, torch.Tensor):
        raise StudyError(f"{name} must be a torch.Tensor {shape}, got {type(value).__name__}")
    if value.numel() != size:
        many = value.dim() > 1 and value.shape[0] > 1 and value[0].numel() == size
        raise StudyError(f"{name} must be one {'latent' if z is not None else 'image'} {shape}, got shape "
                         f"{tuple(value.shape)}" + (f", {value.shape[0]} of them: pass one, say {name}[:1]" if many else ""))


def _outside(t) -> float:
    """The share of what arrives at an activation's inverse outside its open domain (0 for a Linear)."""
    bounds = t.step.kind.output_range
    if bounds is None:
        return 0.0
    return float(((t.arriving <= bounds[0]) | (t.arriving >= bounds[1]) | ~torch.isfinite(t.arriving)).double().mean())


def draw(found: dict, model, *, title: str = ""):
    """x and D(ẑ) of each inversion; the chain's steps; ||ẑ|| against the prior's typical radius."""
    fig = plt.figure(figsize=(13, 4.2))  # fixed margins, no layout engine: a layout pass would double an update's time
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 3.6, 2], left=0.01, right=0.99, bottom=0.2, top=0.86,
                            wspace=0.5, hspace=0.3)  # the images two by two: the charts get room
    images = {"x": found["x"]}
    with torch.no_grad():
        for name, z in found["latents"].items():
            finite = torch.isfinite(z).all()
            label = f"D({name})" if finite else f"D({name}):\nẑ not finite"
            images[label] = model.decoder(z.float()) if finite else torch.full_like(found["x"], float("nan"))
    for i, (name, image) in enumerate(images.items()):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        ax.imshow(image.detach().cpu().float().reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[], title=name)
    ax = fig.add_subplot(grid[:, 2])
    names = [s["step"].removeprefix("inv").replace("_", "\n") for s in found["steps"]]  # upright, apart
    if "rel_err" in found["steps"][0]:
        errors = np.array([s["rel_err"] for s in found["steps"]], dtype=float)
        finite = np.isfinite(errors)
        ax.semilogy(names, np.where(finite, np.maximum(errors, 1e-17), np.nan), marker="o")
        if not finite.all():  # from the failing step on nothing finite is left: marked at the top
            top = np.nanmax(np.where(finite, errors, np.nan), initial=1.0) * 10
            ax.scatter([n for n, f in zip(names, finite) if not f], [top] * int((~finite).sum()), marker="x",
                       color="C3", label="not finite")
            ax.legend(fontsize=READABLE)
        ax.set(ylabel="relative error after the step", title=found.get("verdict", ""))
    else:
        ax.bar(names, [s["outside"] for s in found["steps"]])
        ax.set(ylabel="share outside its domain", title="what reaches each inverse", ylim=(0, 1))
    ax.tick_params(axis="x", labelsize=READABLE)
    ax = fig.add_subplot(grid[:, 3])
    norms = {k: float(z.double().norm()) for k, z in found["latents"].items()}
    d = found["latents"]["encoder"].shape[1]
    shown = {k: v for k, v in norms.items() if np.isfinite(v) and v > 0}  # a non-finite latent has no place
    ax.scatter(list(shown.values()), list(shown), color=[{"encoder": "C0", "closed form": "C3"}.get(k, "C2") for k in shown],
               s=60, zorder=3)
    ax.axvline(np.sqrt(d), ls="--", color="0.4", label=f"prior's typical ||z|| = √{d}")
    values = [*shown.values(), np.sqrt(d)]
    ax.set(xscale="log", xlim=(min(values) / 3, max(values) * 3), ylim=(-0.6, len(norms) - 0.4),
           xlabel="||ẑ|| (log scale)", title="where the latent lies")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: minor labels overlap
    ax.legend(fontsize=READABLE, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle(title or f"{found['arithmetic']}, {'original clamp' if found['clamp'] else 'no clamp'}", fontsize=11)
    return fig
