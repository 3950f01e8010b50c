"""Figures of the study. Each function draws one figure, saves it as PNG and returns it: a title, axes
labelled with their units, a legend when it draws more than one series."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from adjustText import adjust_text
from matplotlib.ticker import PercentFormatter
from PIL import Image

from ..constants import IMAGE_SIDE
from ..core.files import atomic_write
from ..core.table import kind_names

_LOSS_LABEL = "loss per pixel (nats): BCE/pixel + α·KL/latent dim"


def compact_png(png: bytes) -> bytes:
    """The same picture in a 256-colour palette: about a third of the bytes (plots have few colours;
    the digit grids are grey), so every committed run's figures fit the reports' weight budget."""
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _save(fig, path: str | Path | None):
    """Write `fig` as PNG at `path`, whole or not at all (nothing when path is None); returns it."""
    if path is not None:
        drawn = io.BytesIO()
        fig.savefig(drawn, format="png", dpi=110, bbox_inches="tight")
        atomic_write(path, compact_png(drawn.getvalue()))
    return fig


def _finish(fig, path, title: str | None = None):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _row(n: int, width: float, height: float):
    """A figure with n panels side by side, each width x height inches: (figure, its axes)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def loss_progress(history: dict, path: str | Path | None = None):
    """Train and validation loss per epoch, side by side, like the original's progress plot saved at each checkpoint."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in zip(axes, ("train", "validation"), ("Train loss", "Validation loss")):
        ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=title)
        ax.set(title=title, xlabel="Epochs", ylabel="Loss (original convention)")
        ax.legend()
    return _finish(fig, path)


def loss_curves(history: dict, path: str | Path | None = None, *, lr_steps=()):
    """Train and validation loss on one axis, final values in the legend, learning-rate steps marked, and an
    inset on the last two thirds of the epochs, where the two curves are too close to tell apart."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    n = len(history["train"])
    epochs, zoom = np.arange(1, n + 1), slice(int(n * (1 / 3)), n)
    inset = ax.inset_axes([0.42, 0.4, 0.55, 0.45]) if n >= 6 else None
    for key, colour in (("train", "C0"), ("validation", "C1")):
        values = np.asarray(history[key], dtype=float)
        ax.plot(epochs, values, color=colour, label=f"{key} (final {values[-1]:.5f})")
        if inset is not None:
            inset.plot(epochs[zoom], values[zoom], color=colour)
    for i, epoch in enumerate(e for e in lr_steps if e < n):
        ax.axvline(epoch + 0.5, ls=":", color="0.4", label="learning-rate step" if i == 0 else None)
    if inset is not None:
        inset.set_title(f"epochs {zoom.start + 1}-{n}", fontsize=8)
        inset.tick_params(labelsize=7)
        ax.indicate_inset_zoom(inset, edgecolor="0.5")
    ax.set(xlabel="epoch", ylabel=_LOSS_LABEL, title=f"Training and validation loss, {n} epochs")
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path)


def image_rows(rows: list[np.ndarray], row_titles: list[str] | None = None, path=None, *, title: str | None = None):
    """A grid of 28x28 images: rows[r] (k, 28, 28) left to right, grey 0 (black) to 1 (white), named by row_titles."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 0.55, n_rows * 0.55), squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set(xticks=[], yticks=[])
            ax.spines[:].set_visible(False)
            if c < len(row):
                ax.imshow(row[c].reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray", vmin=0, vmax=1)
        if row_titles:
            axes[r, 0].set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0, right=1, top=1, bottom=0)  # square cells; no blank band above
    if title:
        fig.suptitle(title, fontsize=9, y=1 + 0.08 / (n_rows * 0.55), va="bottom")  # 0.08 inch above the images
    return _save(fig, path)


def bars(values: dict, title: str, ylabel: str, path=None, *, xlabel: str | None = None):
    """One bar per key (e.g. per digit: pass xlabel="digit")."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([str(k) for k in values], list(values.values()), color=sns.color_palette("bright", len(values)))
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel or "")
    return _finish(fig, path)


def preactivation_histograms(values: dict[str, np.ndarray], marks: dict[str, float], path=None):
    """Histogram of |pre-activation| per layer, log counts, with the exact-saturation points marked."""
    fig, axes = _row(len(values), 4.5, 3.5)
    for ax, (name, v) in zip(axes, values.items()):
        ax.hist(np.abs(v), bins=100, log=True, color="0.4")
        for label, x in marks.get(name, {}).items():
            ax.axvline(x, ls="--", lw=1, color="C3" if "32" in label else "C0", label=label)
        ax.set(title=f"output of decoder layer {name}", xlabel="|pre-activation| (unitless)", ylabel="count (log scale)")
        if marks.get(name):  # a layer that never saturates (a leaky one) has no mark to name
            ax.legend(fontsize=7)
    return _finish(fig, path, "Decoder pre-activations and where their activation saturates exactly")


def heatmaps(maps: dict[str, np.ndarray], path=None):
    """Side-by-side maps over the 28x28 pixel grid of a share of images (e.g. whose pixel is exactly 0), each
    coloured from 0 to its own largest value, so a map near 1% is as readable as one reaching 100%."""
    fig, axes = _row(len(maps), 4.2, 3.6)
    for ax, (panel, m) in zip(axes, maps.items()):
        m = np.asarray(m, dtype=float)
        top = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=top if top > 0 else 1.0)
        ax.set(title=panel, xlabel="pixel column", ylabel="pixel row", xticks=[0, m.shape[1] - 1],
               yticks=[0, m.shape[0] - 1])
        bar = fig.colorbar(im, ax=ax, fraction=0.046)
        bar.set_label("share of images")
        bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0 if top >= 0.1 else 1))
    return _finish(fig, path)


def _method_styles(names) -> dict[str, dict]:
    """A distinct colour and marker per method (20 colours, then markers take over), stable by name order."""
    colours, markers = plt.get_cmap("tab20").colors, "osD^v<>ph*"
    return {n: {"color": colours[i % 20], "marker": markers[(i // 10) % len(markers)]} for i, n in enumerate(names)}


def curves(x, series: dict[str, list], xlabel: str, ylabel: str, title: str, path=None, logx=False, logy=False, ax=None):
    """One line per series over a shared x (for sweeps); on `ax` when given."""
    ax = ax if ax is not None else plt.subplots(figsize=(6, 4))[1]
    styles = _method_styles(series)
    for label, ys in series.items():
        ax.plot(x, ys, label=label, **styles[label])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale="log" if logx else "linear", yscale="log" if logy else "linear")
    many = len(series) > 4  # beside the axes rather than over the data
    ax.legend(fontsize=7 if many else 8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if many else {}))
    return _save(ax.figure, path)


def embeddings(panels: dict[str, tuple[np.ndarray, np.ndarray]], path=None):
    """2-D embeddings side by side, each {title: (points (N, 2), digit labels (N,))} coloured by digit."""
    fig, axes = _row(len(panels), 7, 6)
    for ax, (panel, (points, labels)) in zip(axes, panels.items()):
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=labels, palette=sns.color_palette("bright", 10),
                        legend="full", s=6, linewidth=0, ax=ax)
        ax.set(title=panel, xlabel="component 1 (arbitrary units)", ylabel="component 2 (arbitrary units)")
        ax.legend(title="digit", markerscale=2, fontsize=8, loc="best")
    return _save(fig, path)


def clamp_sweep(sweep, path=None):
    """Notebook 04's sweep of the clamp margin eps (a DataFrame indexed by eps; 0, no clamp, drawn at 1e-9):
    real-image BCE, and realizable recovery."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    eps_axis = [e if e > 0 else 1e-9 for e in sweep.index]
    curves(eps_axis, {"real images: BCE of D(ẑ)": sweep["real_bce"].tolist()}, "eps (1e-9 = no clamp)",
           "BCE per pixel", "Real test images", logx=True, ax=axes[0])
    curves(eps_axis, {f"{a} success@{t}": sweep[f"realizable_{a}_success_{t}"].tolist()
                      for a in ("float32", "float64") for t in ("1e-4", "1e-6")},
           "eps (1e-9 = no clamp)", "share recovered (0-1)", "Realizable images", logx=True, ax=axes[1])
    return _finish(fig, path, f"The {kind_names('bernoulli')} inverse's clamp margin eps: [eps, 1 - eps]")


def atanh_domain(arriving: dict[str, dict[int, np.ndarray]], layers: list[int], path=None):
    """Per boxed layer (image side first; table: boxed, the original's atanh): density histograms of the values
    reaching its inverse, per regime, with the inverse's domain (-1, 1) shaded."""
    kind, inverse = kind_names("boxed"), kind_names("boxed", "inverse_name")
    fig, axes = _row(len(layers), 6, 4)
    for ax, i in zip(axes, sorted(layers, reverse=True)):
        for regime, values in arriving.items():
            v = values[i][np.isfinite(values[i])]
            ax.hist(v, bins=120, density=True, histtype="step", lw=1.5, label=regime)
        ax.set(xlabel=f"value reaching {inverse}", ylabel="density (per unit of x)",
               title=f"into the inverse of layer {i} ({kind}), original clamps")
        ax.axvspan(-1, 1, color="0.9", zorder=0, label=f"(-1, 1): {inverse}'s domain")
        ax.legend(fontsize=8)
    return _finish(fig, path, f"Values reaching {inverse}: outside the shaded (-1, 1) it is undefined")


def singular_values(svals: dict[str, np.ndarray], path=None):
    """Singular values of each Linear weight, against their relative rank, log scale."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in svals.items():
        ax.semilogy(np.arange(1, len(v) + 1) / len(v), v, label=label)
    ax.set(xlabel="rank / number of singular values", ylabel="singular value (log scale)",
           title="Singular values of the decoder's weights")
    ax.legend(fontsize=8)
    return _save(fig, path)


def quality_vs_time(points: dict[str, list[tuple[float, float]]], n_images: int, path=None, *,
                    probe: dict[str, float] | None = None, norms: dict[str, float] | None = None):
    """Left: each method's mean BCE per pixel along its iterations against seconds per image, the axis cut to
    the range the methods share (a diverging one drawn at the top edge, named so). Right, with `probe`: the
    probe's accuracy on ẑ against its final BCE, ||ẑ|| (`norms`) in the label: a z at infinity shows."""
    fig, axes = _row(2 if probe else 1, 7.5 if probe else 8, 5.5)
    ax, styles = axes[0], _method_styles(points)
    finals = np.array([pts[-1][1] for pts in points.values()], dtype=float)
    top = 10 * np.nanmedian(finals[np.isfinite(finals)]) if np.isfinite(finals).any() else 1.0
    for name, pts in points.items():
        s, b = zip(*pts)
        off = " (off the scale)" if pts[-1][1] > top else ""
        ax.plot(s, np.minimum(np.asarray(b, dtype=float), top), ms=6, label=name + off, color=styles[name]["color"],
                marker=styles[name]["marker"], markevery=[len(s) - 1])
    ax.set(xscale="log", yscale="log", xlabel="seconds per image (log scale)", ylim=(None, top * 1.05),
           ylabel="mean BCE per pixel of D(ẑ) (nats, log scale)", title=f"Quality versus time, up to {n_images} test images")
    ax.legend(fontsize=6.5, ncol=2)
    if probe:
        ax = axes[1]
        for name, pts in points.items():
            if name in probe:
                label = f"{name}, median ||ẑ|| {norms[name]:.3g}" if norms else name
                ax.scatter(min(pts[-1][1], top), probe[name], label=label, **styles[name])
        ax.set(xscale="log", xlabel="final mean BCE per pixel (log scale)", ylabel="probe accuracy on ẑ (0-1)",
               title="What ẑ still means: the linear probe reads the digit from it")
        ax.axhline(0.1, ls=":", color="0.5")
        ax.legend(fontsize=6.5, ncol=2)
    return _finish(fig, path)


def _grouped_bars(ax, ran, series: tuple, x):
    for i, (key, label) in enumerate(series):
        ax.bar(x + (i - 1) * 0.27, ran[key], 0.27, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(ran.index, rotation=35, ha="right", fontsize=8)


def runs_overview(frame, path=None, sweep=None):
    """Notebook 99's charts across runs: closed-form recovery against the best method's; the real-image
    BCE of D(ẑ) per inversion (log scale); each design's float32 closed-form recovery against its NELBO."""
    ran = frame[frame["notebooks"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    x = np.arange(len(ran))
    _grouped_bars(axes[0], ran.fillna({k: 0 for k in ("cf_f32", "cf_f64", "best_f64")}),
                  (("cf_f32", "closed form, float32 to 1e-4"), ("cf_f64", "closed form, float64 to 1e-6"),
                   ("best_f64", "best method, float64 to 1e-6")), x)
    axes[0].set(ylabel="share of realizable latents recovered", title="Realizable images x = D(z)")
    axes[0].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    _grouped_bars(axes[1], ran, (("recon_bce", "encoder mean"), ("cf_real_bce", "closed form (clamp 1e-3)"),
                                 ("map_real_bce", "posterior mode (MAP)")), x)
    axes[1].set(yscale="log", ylabel="BCE per pixel of D(ẑ) (log scale)", title="Real test images")
    priced = ran.dropna(subset=["nelbo", "cf_f32"])
    axes[2].scatter(priced["nelbo"], priced["cf_f32"], color="C3", zorder=3, label="committed runs (90 epochs)")
    labelled = priced[~priced.index.str.startswith("default_seed")]  # the seeds sit on the default
    points = [(priced["nelbo"].to_numpy(float), priced["cf_f32"].to_numpy(float))]
    if sweep is not None and len(sweep):  # shorter trainings of the designs, hollow; their names in 99's table
        for (epochs, sweeps), colour in zip(sweep.groupby("epochs"), ("C0", "C2", "C4", "C5")):
            points.append((sweeps["test_nelbo_nats"].to_numpy(float), sweeps["f32_success_1e-4"].to_numpy(float)))
            axes[2].scatter(*points[-1], facecolors="none", edgecolors=colour, label=f"sweep, {epochs} epochs (99's table)")
    axes[2].legend(fontsize=8, loc="center right")
    names = [axes[2].text(row["nelbo"], row["cf_f32"], "default (3 seeds)" if name == "default" and "default_seed1" in
                          priced.index else name, fontsize=8) for name, row in labelled.iterrows()]
    axes[2].set(xlabel="test negative ELBO (nats per image, lower is better)", ylabel="closed form, float32 to 1e-4",
                title="The price of invertibility", ylim=(-0.12, 1.12))  # room for the labels inside
    axes[2].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes[0].set(ylim=(0, 1.32), yticks=np.linspace(0, 1, 6))  # room above the bars for the legend
    axes[0].legend(fontsize=7, loc="upper center", ncol=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()  # the axes' final size first: the labels are placed in it, clear of each other and the points
    adjust_text(names, x=np.concatenate([p[0] for p in points]), y=np.concatenate([p[1] for p in points]), ax=axes[2],
                objects=[axes[2].get_legend()], arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
    return _save(fig, path)
