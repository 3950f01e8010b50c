"""Figures of the study. Each function draws one figure, saves it as PNG and returns it.

Every figure has a title, axes labelled with their units, and a legend when it draws more than one
series; keyword arguments (title=, xlabel=, ...) let a notebook say more than the defaults.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import PercentFormatter
from PIL import Image

from ..constants import IMAGE_SIDE
from ..core.files import atomic_write


def compact_png(png: bytes) -> bytes:
    """The same picture in a 256-colour palette: about a third of the bytes (plots have few colours;
    the digit grids are grey), so every committed run's figures fit the reports' weight budget."""
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def save(fig, path: str | Path | None):
    """Write `fig` as PNG at `path` (nothing when path is None); every figure of the study goes here."""
    if path is not None:  # whole or not at all, like every file the study writes
        drawn = io.BytesIO()
        fig.savefig(drawn, format="png", dpi=110, bbox_inches="tight")
        atomic_write(path, compact_png(drawn.getvalue()))
    return fig


LOSS_LABEL = "loss per pixel (nats): BCE/pixel + α·KL/latent dim"


def _suptitle(fig, title: str | None):
    if title:
        fig.suptitle(title)


def loss_progress(history: dict, path: str | Path | None = None):
    """Train and validation loss per epoch, side by side, like the original's progress plot (the
    figure saved at each checkpoint, as the original saved it; loss_curves draws the final one)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in zip(axes, ("train", "validation"), ("Train loss", "Validation loss")):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label=title)
        ax.set(title=title, xlabel="Epochs", ylabel="Loss (original convention)")
        ax.legend()
    fig.tight_layout()
    return save(fig, path)


def loss_curves(history: dict, path: str | Path | None = None, *, lr_steps=(), title: str | None = None,
                zoom_from: float = 1 / 3):
    """The final loss figure: train and validation loss on one axis (same units), final values in the
    legend, learning-rate steps marked, and an inset zoomed on the epochs from `zoom_from` of the way on,
    where the two curves are too close to tell apart at full scale."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    n = len(history["train"])
    epochs = np.arange(1, n + 1)
    zoom = slice(int(n * zoom_from), n)
    inset = ax.inset_axes([0.42, 0.4, 0.55, 0.45]) if n >= 6 else None
    for key, label, colour in (("train", "train", "C0"), ("validation", "validation", "C1")):
        values = np.asarray(history[key], dtype=float)
        ax.plot(epochs, values, color=colour, label=f"{label} (final {values[-1]:.5f})")
        if inset is not None:
            inset.plot(epochs[zoom], values[zoom], color=colour)
    for i, epoch in enumerate(e for e in lr_steps if e < n):
        ax.axvline(epoch + 0.5, ls=":", color="0.4", label="learning-rate step" if i == 0 else None)
    if inset is not None:
        inset.set_title(f"epochs {zoom.start + 1}-{n}", fontsize=8)
        inset.tick_params(labelsize=7)
        ax.indicate_inset_zoom(inset, edgecolor="0.5")
    ax.set(xlabel="epoch", ylabel=LOSS_LABEL, title=title or f"Training and validation loss, {n} epochs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def scatter_by_digit(points: np.ndarray, labels: np.ndarray, title: str, path=None, ax=None, *,
                     xlabel: str = "component 1 (arbitrary units)", ylabel: str = "component 2 (arbitrary units)"):
    """2-D embedding coloured by digit (the original's t-SNE figure)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 6))
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=labels, palette=sns.color_palette("bright", 10),
                    legend="full", s=6, linewidth=0, ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(title="digit", markerscale=2, fontsize=8, loc="best")
    return save(fig or ax.figure, path)


def image_rows(rows: list[np.ndarray], row_titles: list[str] | None = None, path=None, scale: float = 0.55, *,
               title: str | None = None):
    """A grid of 28x28 images: rows[r] is an array (k, 28, 28) drawn left to right, grey levels 0 (black)
    to 1 (white), each row named by row_titles; `title` above the grid."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * scale, n_rows * scale), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row):
                ax.imshow(row[c].reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray", vmin=0, vmax=1)
        if row_titles:
            axes[r, 0].set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    if title:
        fig.suptitle(title, fontsize=9, y=1 + 0.12 / max(n_rows, 1))
    return save(fig, path)


def bars(values: dict, title: str, ylabel: str, path=None, *, xlabel: str | None = None):
    """One bar per key (e.g. per digit: pass xlabel="digit")."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([str(k) for k in values], list(values.values()), color=sns.color_palette("bright", len(values)))
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel or "")
    fig.tight_layout()
    return save(fig, path)


def preactivation_histograms(values: dict[str, np.ndarray], marks: dict[str, float], path=None, *,
                             title: str | None = "Decoder pre-activations and where their activation saturates exactly"):
    """Histogram of |pre-activation| per layer, log counts, with the exact-saturation points marked."""
    fig, axes = plt.subplots(1, len(values), figsize=(4.5 * len(values), 3.5), squeeze=False)
    for ax, (name, v) in zip(axes[0], values.items()):
        ax.hist(np.abs(v), bins=100, log=True, color="0.4")
        layer_marks = marks.get(name, {})
        for label, x in layer_marks.items():
            ax.axvline(x, ls="--", lw=1, color="C3" if "32" in label else "C0", label=label)
        ax.set(title=f"output of decoder layer {name}", xlabel="|pre-activation| (unitless)",
               ylabel="count (log scale)")
        if layer_marks:  # a layer that never saturates (LeakyReLU) has no mark to name
            ax.legend(fontsize=7)
    _suptitle(fig, title)
    fig.tight_layout()
    return save(fig, path)


def heatmaps(maps: dict[str, np.ndarray], path=None, cmap="magma", *, value_label: str = "share of images",
             percent: bool = True, title: str | None = None, vmax: dict[str, float] | None = None):
    """Side-by-side 2-D maps over the 28x28 pixel grid (e.g. the share of images whose pixel is exactly 0).

    Each panel has its own colour scale, from 0 to its largest value (or vmax[panel title]), so a
    map whose values stay near 1% is as readable as one that reaches 100%; its colour bar says so.
    """
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.6), squeeze=False)
    for ax, (panel, m) in zip(axes[0], maps.items()):
        m = np.asarray(m, dtype=float)
        top = (vmax or {}).get(panel)
        top = top if top is not None else (float(np.nanmax(m)) if np.isfinite(m).any() else 1.0)
        im = ax.imshow(m, cmap=cmap, vmin=0, vmax=top if top > 0 else 1.0)
        ax.set(title=panel, xlabel="pixel column", ylabel="pixel row", xticks=[0, m.shape[1] - 1],
               yticks=[0, m.shape[0] - 1])
        bar = fig.colorbar(im, ax=ax, fraction=0.046)
        bar.set_label(value_label)
        if percent:
            bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0 if top >= 0.1 else 1))
    _suptitle(fig, title)
    fig.tight_layout()
    return save(fig, path)


def curves(x, series: dict[str, list], xlabel: str, ylabel: str, title: str, path=None, logx=False, logy=False, ax=None):
    """One line per series over a shared x (for sweeps)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    styles = _method_styles(series)
    for label, ys in series.items():
        ax.plot(x, ys, label=label, **styles[label])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    many = len(series) > 4  # beside the axes rather than over the data
    ax.legend(fontsize=7 if many else 8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if many else {}))
    return save(fig or ax.figure, path)


def overlaid_histograms(groups: dict[str, np.ndarray], xlabel: str, title: str, path=None, bins=120, ax=None):
    """Density histograms of several samples on one axis (e.g. real vs realizable)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in groups.items():
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, label=label)
    ax.set(xlabel=xlabel, ylabel="density (per unit of x)", title=title)
    ax.legend(fontsize=8)
    return save(fig or ax.figure, path)


def embeddings(panels: dict[str, tuple[np.ndarray, np.ndarray]], path=None, *, title: str | None = None):
    """2-D embeddings side by side, each {title: (points (N, 2), digit labels (N,))}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6), squeeze=False)
    for ax, (panel, (points, labels)) in zip(axes[0], panels.items()):
        scatter_by_digit(points[:, :2], labels, panel, ax=ax)
    _suptitle(fig, title)
    return save(fig, path)


def clamp_sweep(sweep, path=None, *, title: str | None = "The Sigmoid inverse's clamp margin eps: [eps, 1 - eps]"):
    """Notebook 04's sweep of the clamp margin eps: real-image BCE, and realizable recovery.

    `sweep` is a DataFrame indexed by eps (0 = no clamp, drawn at 1e-9 on the log axis).
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    eps_axis = [e if e > 0 else 1e-9 for e in sweep.index]
    curves(eps_axis, {"real images: BCE of D(ẑ)": sweep["real_bce"].tolist()}, "eps (1e-9 = no clamp)",
           "BCE per pixel", "Real test images", logx=True, ax=axes[0])
    curves(eps_axis, {f"{a} success@{t}": sweep[f"realizable_{a}_success_{t}"].tolist()
                      for a in ("float32", "float64") for t in ("1e-4", "1e-6")},
           "eps (1e-9 = no clamp)", "share recovered (0-1)", "Realizable images", logx=True, ax=axes[1])
    _suptitle(fig, title)
    fig.tight_layout()
    return save(fig, path)


def atanh_domain(arriving: dict[str, dict[int, np.ndarray]], tanh_layers: list[int], path=None, *,
                 title: str | None = "Values reaching atanh: outside the shaded (-1, 1) it is undefined"):
    """Per Tanh layer (image side first): the values reaching its inverse, per regime, with (-1, 1) shaded."""
    fig, axes = plt.subplots(1, len(tanh_layers), figsize=(6 * len(tanh_layers), 4), squeeze=False)
    for ax, i in zip(axes[0], sorted(tanh_layers, reverse=True)):
        overlaid_histograms({regime: values[i] for regime, values in arriving.items()}, "value reaching atanh",
                            f"into the inverse of layer {i} (Tanh), original clamps", ax=ax)
        ax.axvspan(-1, 1, color="0.9", zorder=0, label="(-1, 1): atanh's domain")
        ax.legend(fontsize=8)
    _suptitle(fig, title)
    fig.tight_layout()
    return save(fig, path)


def singular_values(svals: dict[str, np.ndarray], path=None):
    """Singular values of each Linear weight, against their relative rank, log scale."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in svals.items():
        ax.semilogy(np.arange(1, len(v) + 1) / len(v), v, label=label)
    ax.set(xlabel="rank / number of singular values", ylabel="singular value (log scale)",
           title="Singular values of the decoder's weights")
    ax.legend(fontsize=8)
    return save(fig, path)


def _method_styles(names) -> dict[str, dict]:
    """A distinct colour and marker per method (20 colours, then markers take over), stable by name order."""
    colours, markers = plt.get_cmap("tab20").colors, "osD^v<>ph*"
    return {n: {"color": colours[i % 20], "marker": markers[(i // 10) % len(markers)]} for i, n in enumerate(names)}


def quality_vs_time(points: dict[str, list[tuple[float, float]]], n_images: int, path=None, *,
                    probe: dict[str, float] | None = None, norms: dict[str, float] | None = None):
    """Left: each method's mean BCE per pixel along its iterations against seconds per image (one point for
    a one-shot method), the axis cut to the range the methods share (a diverging one is drawn at the top
    edge, named in its label). Right, with `probe`: what the latent still means, the probe's accuracy on ẑ
    against its final BCE, with ||ẑ|| (`norms`) in the label, so a pixel-optimal z at infinity shows."""
    fig, axes = plt.subplots(1, 2 if probe else 1, figsize=(15 if probe else 8, 5.5), squeeze=False)
    ax, styles = axes[0, 0], _method_styles(points)
    finals = np.array([pts[-1][1] for pts in points.values()], dtype=float)
    top = 10 * np.nanmedian(finals[np.isfinite(finals)]) if np.isfinite(finals).any() else 1.0
    for name, pts in points.items():
        s, b = zip(*pts)
        b = np.minimum(np.asarray(b, dtype=float), top)
        off = " (off the scale)" if pts[-1][1] > top else ""
        ax.plot(s, b, ms=6, label=name + off, color=styles[name]["color"],
                marker=styles[name]["marker"], markevery=[len(s) - 1])
    ax.set(xscale="log", yscale="log", xlabel="seconds per image (log scale)", ylim=(None, top * 1.05),
           ylabel="mean BCE per pixel of D(ẑ) (nats, log scale)", title=f"Quality versus time, up to {n_images} test images")
    ax.legend(fontsize=6.5, ncol=2)
    if probe:
        ax = axes[0, 1]
        for name, pts in points.items():
            if name in probe:
                label = f"{name}, median ||ẑ|| {norms[name]:.3g}" if norms else name
                ax.scatter(min(pts[-1][1], top), probe[name], label=label, **styles[name])
        ax.set(xscale="log", xlabel="final mean BCE per pixel (log scale)", ylabel="probe accuracy on ẑ (0-1)",
               title="What ẑ still means: the linear probe reads the digit from it")
        ax.axhline(0.1, ls=":", color="0.5")
        ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    return save(fig, path)


def runs_overview(frame, path=None, sweep=None):
    """Notebook 99's charts across runs: closed-form recovery against the best method's; the real-image
    BCE of D(ẑ) per inversion (log scale); each design's float32 closed-form recovery against its NELBO."""
    ran = frame[frame["notebooks"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    x = np.arange(len(ran))
    for i, (key, label) in enumerate((("cf_f32", "closed form, float32 to 1e-4"), ("cf_f64", "closed form, float64 to 1e-6"),
                                      ("best_f64", "best method, float64 to 1e-6"))):
        axes[0].bar(x + (i - 1) * 0.27, ran[key].fillna(0), 0.27, label=label)
    axes[0].set(xticks=x, ylabel="share of realizable latents recovered", title="Realizable images x = D(z)")
    axes[0].set_xticklabels(ran.index, rotation=35, ha="right", fontsize=8)
    axes[0].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    for i, (key, label) in enumerate((("recon_bce", "encoder mean"), ("cf_real_bce", "closed form (clamp 1e-3)"),
                                      ("map_real_bce", "posterior mode (MAP)"))):
        axes[1].bar(x + (i - 1) * 0.27, ran[key], 0.27, label=label)
    axes[1].set(xticks=x, yscale="log", ylabel="BCE per pixel of D(ẑ) (log scale)", title="Real test images")
    axes[1].set_xticklabels(ran.index, rotation=35, ha="right", fontsize=8)
    priced = ran.dropna(subset=["nelbo", "cf_f32"])
    axes[2].scatter(priced["nelbo"], priced["cf_f32"], color="C3", zorder=3, label="committed runs (90 epochs)")
    labelled = priced[~priced.index.str.startswith("default_seed")].sort_values("nelbo")  # seeds sit on the default
    for i, (name, row) in enumerate(labelled.iterrows()):  # neighbours' labels alternate above and below
        axes[2].annotate("default (3 seeds)" if name == "default" and "default_seed1" in priced.index else name,
                         (row["nelbo"], row["cf_f32"]), fontsize=8, xytext=(4, 6 if i % 2 else -13),
                         textcoords="offset points")
    if sweep is not None and len(sweep):  # shorter trainings of the designs, hollow; their names in 99's table
        for (epochs, points), colour in zip(sweep.groupby("epochs"), ("C0", "C2", "C4", "C5")):
            axes[2].scatter(points["test_nelbo_nats"].astype(float), points["f32_success_1e-4"].astype(float),
                            facecolors="none", edgecolors=colour, label=f"sweep, {epochs} epochs (99's table)")
    axes[2].legend(fontsize=7, loc="center right")
    axes[2].set(xlabel="test negative ELBO (nats per image, lower is better)", ylabel="closed form, float32 to 1e-4",
                title="The price of invertibility")
    axes[2].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes[0].set(ylim=(0, 1.32), yticks=np.linspace(0, 1, 6))  # room above the bars for the legend
    axes[0].legend(fontsize=7, loc="upper center", ncol=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
