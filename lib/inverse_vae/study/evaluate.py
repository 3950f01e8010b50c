"""Evaluation of a trained VAE on the test set (notebook 02): losses, latents, probe, per digit."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..core.losses import negative_elbo_nats, original_loss
from ..core.table import ends_in_bernoulli
from ..metrics import image_metrics, per_image_metrics
from ..progress import progress

_TSNE_STEP = 25  # t-SNE iterations per step of its bar: under two seconds on 10,000 latents here


@torch.no_grad()
def encode_means(model, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Encoder means of all images, batched (no sampling)."""
    device = next(model.parameters()).device
    return torch.cat([model.encode(x.to(device))[0].cpu() for x in images.split(batch_size)])


@torch.no_grad()
def decode(model, z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.decode(b.to(device)).cpu() for b in z.split(batch_size)])


@torch.no_grad()
def test_losses(model, images: torch.Tensor, alpha: float, kind: str, batch_size: int, seed: int) -> dict:
    """Test loss in the original convention (batch means, one seeded z per image, as its validation did)
    and, for a VAE, the negative ELBO in nats (an autoencoder has no KL term: no such keys)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    original, parts = [], {"nelbo": [], "bce": [], "kl": []}
    for x in images.split(batch_size):
        x = x.to(device)
        out, mean, log_var = model(x, g)
        original.append(original_loss(out, x, mean, log_var, alpha, kind)[0])
        if log_var is not None:
            for k, v in negative_elbo_nats(out, x, mean, log_var).items():
                parts[k].append(v)
    losses = {"test_loss_original": torch.stack(original).mean().item()}
    if model.variational:
        losses.update({f"{k}_nats": torch.cat(v).mean().item() for k, v in parts.items()})
    return losses


def reconstruction_metrics(model, x_hat: torch.Tensor, x: torch.Tensor) -> dict:
    """image_metrics of D(.) against x, with BCE only where the decoder's output lies in [0, 1]."""
    return image_metrics(x_hat, x, bce=ends_in_bernoulli(model.decoder))


def linear_probe(train_z, train_y, max_iter: int = 1000, seed: int = 0):
    """Logistic regression on standardized latents: how linearly readable the digit is."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    return probe.fit(np.asarray(train_z), np.asarray(train_y))


def probe_accuracy(probe, z, y) -> float:
    """Share of latents whose digit the probe reads right; a non-finite latent counts as wrong."""
    z = z.detach().double().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    finite = np.isfinite(z).all(axis=1)
    predictions = np.full(len(z), -1)
    if finite.any():
        predictions[finite] = probe.predict(z[finite])
    return float((predictions == np.asarray(y)).mean())


def reconstruction_by_digit(model, images, labels, means) -> dict[int, dict[str, float]]:
    """Per-digit bce (where it applies), mse, psnr, ssim of D(encoder mean) against x."""
    values = per_image_metrics(decode(model, means), images, bce=ends_in_bernoulli(model.decoder))
    labels = np.asarray(labels)
    return {int(d): {k: float(np.nanmean(v[labels == d])) for k, v in values.items()} for d in np.unique(labels)}


def embed_2d(z, method: str, n_components: int = 2, seed: int = 0) -> np.ndarray:
    """t-SNE ("tsne") or PCA view of latents (seeded). openTSNE's t-SNE (FFT interpolation, PCA start): the
    kind of map scikit-learn's Barnes-Hut draws in a fraction of its time, far less on latents of very
    different scales (the chain's), and as reproducible for a given seed."""
    z = np.asarray(z.detach().cpu() if isinstance(z, torch.Tensor) else z, dtype=np.float64)
    if method == "tsne":
        from openTSNE import TSNE

        tsne = TSNE(n_components=n_components, random_state=seed, initialization="pca",
                    n_jobs=torch.get_num_threads(), verbose=False, callbacks_every_iters=_TSNE_STEP)
        with progress(None, total=tsne.early_exaggeration_iter + tsne.n_iter, desc="t-SNE iterations") as bar:
            # A callback only adds the KL's evaluation (the embedding is bit for bit the same); a true answer
            # would stop the optimization, and tqdm's update answers whether it redrew.
            tsne.callbacks = lambda *_: bar.update(_TSNE_STEP) and False
            return np.asarray(tsne.fit(z))
    return PCA(n_components=n_components, random_state=seed).fit_transform(z)


def examples_per_digit(labels, per_digit_count: int = 10) -> dict[int, np.ndarray]:
    """Indices of the first `per_digit_count` test images of each digit, as the original grid used."""
    labels = np.asarray(labels)
    return {int(d): np.flatnonzero(labels == d)[:per_digit_count] for d in range(10)}
