"""Figures of the study. Each function draws one figure, saves it as PNG and returns it."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ..constants import IMAGE_SIDE
from ..core.files import atomic_write


def save(fig, path: str | Path | None):
    """Write `fig` as PNG at `path` (nothing when path is None); every figure of the study goes here."""
    if path is not None:  # whole or not at all, like every file the study writes
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return fig


def loss_progress(history: dict, path: str | Path | None = None):
    """Train and validation loss per epoch, side by side, like the original's progress plot."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in zip(axes, ("train", "validation"), ("Train loss", "Validation loss")):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label=title)
        ax.set(title=title, xlabel="Epochs", ylabel="Loss (original convention)")
        ax.legend()
    fig.tight_layout()
    return save(fig, path)


def scatter_by_digit(points: np.ndarray, labels: np.ndarray, title: str, path=None, ax=None):
    """2-D embedding coloured by digit (the original's t-SNE figure)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 6))
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=labels, palette=sns.color_palette("bright", 10),
                    legend="full", s=6, linewidth=0, ax=ax)
    ax.set_title(title)
    ax.legend(title="digit", markerscale=2, fontsize=8, loc="best")
    return save(fig or ax.figure, path)


def image_rows(rows: list[np.ndarray], row_titles: list[str] | None = None, path=None, scale: float = 0.55):
    """A grid of 28x28 images: rows[r] is an array (k, 28, 28) drawn left to right."""
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
    return save(fig, path)


def bars(values: dict, title: str, ylabel: str, path=None):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([str(k) for k in values], list(values.values()), color=sns.color_palette("bright", len(values)))
    ax.set(title=title, ylabel=ylabel)
    fig.tight_layout()
    return save(fig, path)


def preactivation_histograms(values: dict[str, np.ndarray], marks: dict[str, float], path=None):
    """Histogram of |pre-activation| per layer, log counts, with the exact-saturation points marked."""
    fig, axes = plt.subplots(1, len(values), figsize=(4.5 * len(values), 3.5), squeeze=False)
    for ax, (name, v) in zip(axes[0], values.items()):
        ax.hist(np.abs(v), bins=100, log=True, color="0.4")
        for label, x in marks.get(name, {}).items():
            ax.axvline(x, ls="--", lw=1, color="C3" if "32" in label else "C0", label=label)
        ax.set(title=f"output of decoder layer {name}", xlabel="|pre-activation|", ylabel="count")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def heatmaps(maps: dict[str, np.ndarray], path=None, cmap="magma"):
    """Side-by-side 2-D maps (e.g. the share of zero pixels at each of the 28x28 positions)."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.3), squeeze=False)
    for ax, (title, m) in zip(axes[0], maps.items()):
        im = ax.imshow(m, cmap=cmap, vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save(fig, path)


def curves(x, series: dict[str, list], xlabel: str, ylabel: str, title: str, path=None, logx=False, logy=False, ax=None):
    """One line per series over a shared x (for sweeps)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return save(fig or ax.figure, path)


def overlaid_histograms(groups: dict[str, np.ndarray], xlabel: str, title: str, path=None, bins=120, ax=None):
    """Density histograms of several samples on one axis (e.g. real vs realizable)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in groups.items():
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, label=label)
    ax.set(xlabel=xlabel, ylabel="density", title=title)
    ax.legend(fontsize=8)
    return save(fig or ax.figure, path)


def embeddings(panels: dict[str, tuple[np.ndarray, np.ndarray]], path=None):
    """2-D embeddings side by side, each {title: (points (N, 2), digit labels (N,))}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6), squeeze=False)
    for ax, (title, (points, labels)) in zip(axes[0], panels.items()):
        scatter_by_digit(points[:, :2], labels, title, ax=ax)
    return save(fig, path)


def clamp_sweep(sweep, path=None):
    """Notebook 04's sweep of the clamp margin eps: real-image BCE, and realizable recovery.

    `sweep` is a DataFrame indexed by eps (0 = no clamp, drawn at 1e-9 on the log axis).
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    eps_axis = [e if e > 0 else 1e-9 for e in sweep.index]
    curves(eps_axis, {"real images: BCE of D(ẑ)": sweep["real_bce"].tolist()}, "eps (1e-9 = no clamp)",
           "BCE per pixel", "Real test images", logx=True, ax=axes[0])
    curves(eps_axis, {f"{a} success@{t}": sweep[f"realizable_{a}_success_{t}"].tolist()
                      for a in ("float32", "float64") for t in ("1e-4", "1e-6")},
           "eps (1e-9 = no clamp)", "share recovered", "Realizable images", logx=True, ax=axes[1])
    return save(fig, path)


def atanh_domain(arriving: dict[str, dict[int, np.ndarray]], tanh_layers: list[int], path=None):
    """Per Tanh layer (image side first): the values reaching its inverse, per regime, with (-1, 1) shaded."""
    fig, axes = plt.subplots(1, len(tanh_layers), figsize=(6 * len(tanh_layers), 4), squeeze=False)
    for ax, i in zip(axes[0], sorted(tanh_layers, reverse=True)):
        overlaid_histograms({regime: values[i] for regime, values in arriving.items()}, "value reaching atanh",
                            f"into the inverse of layer {i} (Tanh), original clamps", ax=ax)
        ax.axvspan(-1, 1, color="0.9", zorder=0)
    return save(fig, path)


def singular_values(svals: dict[str, np.ndarray], path=None):
    """Singular values of each Linear weight, against their relative rank, log scale."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in svals.items():
        ax.semilogy(np.arange(1, len(v) + 1) / len(v), v, label=label)
    ax.set(xlabel="rank / number of singular values", ylabel="singular value",
           title="Singular values of the decoder's weights")
    ax.legend(fontsize=8)
    return save(fig, path)


def quality_vs_time(points: dict[str, list[tuple[float, float]]], n_images: int, path=None):
    """Each method's mean BCE per pixel along its iterations, against seconds (one point: one-shot)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, pts in points.items():
        s, b = zip(*pts)
        ax.plot(s, b, marker="o" if len(pts) == 1 else None, ms=6, label=name)
    ax.set(xscale="log", yscale="log", xlabel="seconds (whole set)", ylabel="mean BCE per pixel of D(ẑ)",
           title=f"Quality versus time on {n_images} test images")
    ax.legend(fontsize=7)
    return save(fig, path)
