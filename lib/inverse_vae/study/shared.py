"""What several notebooks make once per run: the data splits, the model on the run's device, the prior
sample, the linear probe and the t-SNE of the encoder means.

The probe and the t-SNE are cached in reports/<run>/cache/ as .npz (no pickle: loading never runs code),
keyed by the digest of the model's weights and the settings that shaped them. A committed run's cache is
committed: a scratch run starts from it (runs/run.py), and compacting a checkpoint keeps it valid.
"""
from __future__ import annotations

import html
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..core.checkpoints import fingerprint_changes, load_checkpoint, load_model, tensor_digest
from ..core.config import load_config, run_name
from ..core.data import fetch_mnist, load_mnist, train_val_split
from ..core.files import atomic_write
from ..core.model import resolve_device
from ..core.training import objective_summary
from ..errors import StudyError
from .evaluate import embed_2d, encode_means, linear_probe
from .sentences import say

_PROBE = {"standardscaler": ("scaler.", ("mean_", "scale_", "var_", "n_features_in_", "n_samples_seen_")),
          "logisticregression": ("logistic.", ("classes_", "coef_", "intercept_", "n_features_in_", "n_iter_"))}


def train_val_images(run, log=print):
    """((train images, labels), (validation images, labels)): the seeded 90/10 split, MNIST fetched if needed."""
    fetch_mnist(run.data_root, log=log)
    images, labels = (t[: run.config.data.train_subset] for t in load_mnist(run.data_root, train=True))
    train_idx, val_idx = train_val_split(len(images), run.config.data.val_fraction, run.config.seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def test_images(run, log=print) -> tuple[torch.Tensor, torch.Tensor]:
    fetch_mnist(run.data_root, log=log)
    images, labels = load_mnist(run.data_root, train=False)
    return images[: run.config.data.test_subset], labels[: run.config.data.test_subset]


def trained_model(run):
    """The run's final model in eval mode on the run's device (the CPU, said, where that one is missing);
    refused in one line when it is missing, is not the final epoch, or was trained with other params."""
    state, t = load_checkpoint(run.model_file), run.config.train
    epoch, changed = state.get("epoch"), fingerprint_changes(state, run.config)
    if isinstance(epoch, int) and epoch != t.train_epochs and not run.config.test.allow_intermediate \
            and (epoch < t.train_epochs or changed is not None):
        raise StudyError(f"{run.shown(run.model_file)} holds epoch {epoch}, not train.train_epochs ({t.train_epochs}): "
                         f"finish training (notebooks/01_train.ipynb), or set test.allow_intermediate: true")
    if changed:
        raise StudyError(f"{run.shown(run.model_file)} was trained with other params (changed: {', '.join(changed[:6])}): "
                         f"rerun notebooks/01_train.ipynb")
    return load_model(run.config, run.model_file, resolve_device(run.config.device, say=print))


def describe(run, notebook: str) -> str:
    """Markdown for a notebook's first cell: the run, what 01 trains, and the run's hypothesis stated before
    its results (escaped: text from a params file is shown, never rendered as HTML)."""
    trains = objective_summary(run.config.train, run.config.model.architecture.decoder) if notebook == "01_train" else None
    hypothesis = run.config.hypothesis
    return say("describe", name=run.name, params=run.shown(Path(run.config.source)), writes=run.shown(run.dir),
               trains=trains, hypothesis=None if hypothesis is None else html.escape(hypothesis.strip()))


def device_name(model) -> str:
    return str(next(model.parameters()).device)


def cached(run, name: str, key: dict, compute) -> dict[str, np.ndarray]:
    """The arrays stored as cache/<name>.npz for this key, computed and stored when absent, stale or damaged."""
    path, text = run.dir / "cache" / f"{name}.npz", json.dumps(key, sort_keys=True)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["__key__"]) == text:
                return {k: data[k] for k in data.files if k != "__key__"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        pass
    arrays = compute()
    buffer = io.BytesIO()
    np.savez(buffer, __key__=np.array(text), **arrays)
    atomic_write(path, buffer.getvalue())
    return arrays


def _key(run, **settings) -> dict:
    """A cache key: the SHA-256 of the model's weights (not of the file: a compacted checkpoint keeps them) and
    the run's seed, with the settings that shaped the entry."""
    weights = tensor_digest({"model_state_dict": load_checkpoint(run.model_file)["model_state_dict"]})
    return {"weights": weights, "seed": run.config.seed, **settings}


def prior_latents(run, latent_dim: int, n: int | None = None) -> torch.Tensor:
    """The run's prior sample z ~ N(0, I) (float32, seeded by the run's seed), its first n rows."""
    total = run.config.invert.n_prior
    if n is not None and n > total:
        raise ValueError(f"asked for {n} prior latents but invert.n_prior is {total}")
    z = torch.randn(total, latent_dim, generator=torch.Generator().manual_seed(run.config.seed))
    return z[:n] if n is not None else z


def probe(run, model) -> Pipeline:
    """The run's linear probe, fitted on the encoder means of its training split (cached: the fitted
    attributes it predicts with, restored into a fresh pipeline)."""
    c = run.config
    key = _key(run, max_iter=c.evaluate.probe_max_iter, train_subset=c.data.train_subset, val_fraction=c.data.val_fraction)

    def fit():
        (x_train, y_train), _ = train_val_images(run)
        fitted = linear_probe(encode_means(model, x_train), y_train, c.evaluate.probe_max_iter, c.seed)
        return {prefix + name: np.asarray(getattr(fitted.named_steps[step], name))
                for step, (prefix, names) in _PROBE.items() for name in names}

    arrays, restored = cached(run, "probe", key, fit), make_pipeline(StandardScaler(), LogisticRegression())
    for step, (prefix, names) in _PROBE.items():
        for name in names:
            value = arrays[prefix + name]
            setattr(restored.named_steps[step], name, value.item() if value.ndim == 0 else value)
    return restored


def means_embedding(run, means: torch.Tensor, n: int) -> np.ndarray:
    """t-SNE of the first n encoder means (02 draws it, 03 shows it beside the recovered latents), cached."""
    c = run.config
    key = _key(run, n=n, dims=c.test.n_components, method="openTSNE")
    return cached(run, "means_tsne", key,
                  lambda: {"embedding": embed_2d(means[:n], "tsne", c.test.n_components, c.seed)})["embedding"]


def companion_model(run, params_file: str | None, purpose: str):
    """(config, model, model file) of another run a notebook compares (read only): the run beside this one,
    else the committed one under reports/. None, said in one line, when params_file is None or not trained."""
    if params_file is None:
        return None
    config = load_config(run.root / params_file)
    for reports in dict.fromkeys([run.dir.parent, run.root / "reports"]):
        model_file = reports / run_name(params_file) / config.test.model_path
        if model_file.is_file():
            # on the notebook's own device, whose fallback (if any) the notebook has said already
            return config, load_model(config, model_file, resolve_device(run.config.device, say=lambda line: None)), model_file
    print(say("not_trained", purpose=purpose, params_file=params_file))
    return None
