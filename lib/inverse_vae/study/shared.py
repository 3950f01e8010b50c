"""What several notebooks use, made once per run: the model on the run's device, the prior
sample, the fitted linear probe and the t-SNE of the encoder means.

Notebooks 03, 04 and 05 measure on the same prior latents z ~ N(0, I) (05 on their first rows),
02-05 read the digit from latents with the same probe, and 02 and 03 show the same t-SNE of the
encoder means; these are cached in the run folder (runs.cache), keyed by what shaped them, so a
notebook reruns without refitting.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..core.checkpoints import load_model
from ..core.devices import resolve_device, resolve_device_said
from ..runs.cache import cached_arrays, file_digest
from .evaluate import embed_2d, fit_probe

# The fitted state of StandardScaler and LogisticRegression: enough to predict, no pickle.
_SCALER = ("mean_", "scale_", "var_", "n_features_in_", "n_samples_seen_")
_LOGISTIC = ("classes_", "coef_", "intercept_", "n_features_in_", "n_iter_")


def device(run) -> torch.device:
    """The device the run's params ask for (auto, cuda, mps or cpu); where it is missing, the CPU,
    said in one printed line."""
    return resolve_device_said(run.config.device)


def trained_model(run):
    """The run's final model (test.model_path), in eval mode on the run's device."""
    return load_model(run.config, run.model_file, device(run))


def prior_latents(run, latent_dim: int, n: int | None = None) -> torch.Tensor:
    """The run's prior sample (float32, seeded by the run's seed): its first n rows, all by default."""
    total = run.config.invert.n_prior
    if n is not None and n > total:
        raise ValueError(f"asked for {n} prior latents but invert.n_prior is {total}")

    def draw():
        g = torch.Generator().manual_seed(run.config.seed)
        return {"z": torch.randn(total, latent_dim, generator=g).numpy()}

    z = cached_arrays(run.dir / "cache", "prior", {"seed": run.config.seed, "n": total, "d": latent_dim}, draw)["z"]
    return torch.from_numpy(z[:n] if n is not None else z)


def probe_to_arrays(probe: Pipeline) -> dict[str, np.ndarray]:
    scaler, logistic = probe.named_steps["standardscaler"], probe.named_steps["logisticregression"]
    arrays = {f"scaler.{k}": np.asarray(getattr(scaler, k)) for k in _SCALER}
    arrays.update({f"logistic.{k}": np.asarray(getattr(logistic, k)) for k in _LOGISTIC})
    return arrays


def probe_from_arrays(arrays: dict[str, np.ndarray]) -> Pipeline:
    """A fitted pipeline equal, for predict, to the one probe_to_arrays stored."""
    probe = make_pipeline(StandardScaler(), LogisticRegression())
    for step, names in (("standardscaler", _SCALER), ("logisticregression", _LOGISTIC)):
        prefix = "scaler." if step == "standardscaler" else "logistic."
        for name in names:
            value = arrays[prefix + name]
            setattr(probe.named_steps[step], name, value.item() if value.ndim == 0 else value)
    return probe


def probe(run, model) -> Pipeline:
    """The run's linear probe (fitted on the encoder means of its training split), cached."""
    c = run.config
    key = {"checkpoint": file_digest(run.model_file), "seed": c.seed, "max_iter": c.evaluate.probe_max_iter,
           "train_subset": c.data.train_subset, "val_fraction": c.data.val_fraction}
    return probe_from_arrays(cached_arrays(run.dir / "cache", "probe", key,
                                           lambda: probe_to_arrays(fit_probe(run, model))))


def means_embedding(run, means: torch.Tensor, n: int) -> np.ndarray:
    """t-SNE of the first n encoder means (02 draws it, 03 shows it beside the recovered latents), cached."""
    c = run.config
    key = {"checkpoint": file_digest(run.model_file), "seed": c.seed, "n": n, "dims": c.test.n_components,
           "method": "openTSNE"}
    return cached_arrays(run.dir / "cache", "means_tsne", key,
                         lambda: {"embedding": embed_2d(means[:n], "tsne", c.test.n_components, c.seed)})["embedding"]


def device_name(model) -> str:
    """Where a model computes ("cpu", "cuda:0"), for the metrics (bench/study_time.py reads it)."""
    return str(next(model.parameters()).device)


def quiet_model(run, device: str | None = None):
    """The run's trained model on `device` (default: the run's own), with no device-fallback warning:
    for a notebook that reads other runs' models, where device(run) has already said where it computes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(run.config, run.model_file, resolve_device(device or run.config.device))


def companion_model(run, params_file: str | None, purpose: str):
    """(run, model) of another run whose model a notebook compares (params_file relative to the
    project), read only: the run beside this one, else the committed one under reports/. None,
    said in one printed line, when params_file is None or that run is not trained."""
    from ..runs.paths import open_run

    if params_file is None:
        return None
    roots = dict.fromkeys([run.dir.parent, run.root / "reports"])
    for reports_root in roots:
        other = open_run(params_file, reports_root, run.root, log=lambda *_: None)
        if other.model_file.is_file():
            return other, quiet_model(other, run.config.device)
    print(f"{purpose}: the run of {params_file} is not trained (no {other.model_file.relative_to(run.root)}); "
          f"`./run_all.sh {params_file}` trains it. Left out here.")
    return None
