"""What several notebooks use, made once per run: the prior sample and the fitted linear probe.

Notebooks 03, 04 and 05 measure on the same prior latents z ~ N(0, I) (05 on their first rows),
and 02-05 read the digit from latents with the same probe; both are cached in the run folder
(runs.cache), keyed by what shaped them, so a notebook reruns without refitting.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..runs.cache import cached_arrays, file_digest
from .evaluate import fit_probe

# The fitted state of StandardScaler and LogisticRegression: enough to predict, no pickle.
_SCALER = ("mean_", "scale_", "var_", "n_features_in_", "n_samples_seen_")
_LOGISTIC = ("classes_", "coef_", "intercept_", "n_features_in_", "n_iter_")


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
