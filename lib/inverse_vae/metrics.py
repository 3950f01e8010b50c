"""The study's measures: recovery of a latent (z_hat against the true z) and of an image (D(z_hat) against x).

Images: bce and mse are per-pixel means (the original's convention); psnr and ssim are scikit-image's
definitions (data range 1; SSIM with its defaults: 7x7 uniform window, sample covariance, K1 0.01,
K2 0.03, the mean over windows inside the image), in float64, per image, then averaged over images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .constants import IMAGE_SIDE, SUCCESS_THRESHOLDS
from .errors import StudyError


def relative_errors(z_hat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample ||z_hat - z|| / ||z|| in float64; inf where z_hat is not finite (or z = 0 and z_hat is not)."""
    if not isinstance(z_hat, torch.Tensor) or not isinstance(z, torch.Tensor):
        raise StudyError(f"z_hat and z must be tensors, got {type(z_hat).__name__} and {type(z).__name__}")
    if z_hat.shape != z.shape or z.dim() < 1:
        raise StudyError(f"z_hat shape {tuple(z_hat.shape)} does not match z shape {tuple(z.shape)}")
    z_hat = z_hat.detach().to(torch.float64).reshape(z.shape[0], -1)
    z = z.detach().to(dtype=torch.float64, device=z_hat.device).reshape(z.shape[0], -1)
    if not torch.isfinite(z).all():
        raise StudyError("true latents z contain inf or nan")
    finite = torch.isfinite(z_hat).all(1)
    diff = torch.where(finite[:, None], z_hat - z, 0.0).norm(dim=1)
    norm = z.norm(dim=1)
    inf = torch.full_like(diff, float("inf"))
    rel = torch.where(norm > 0, diff / norm.clamp_min(torch.finfo(torch.float64).tiny),
                      torch.where(diff == 0, 0.0, inf))
    return torch.where(finite, rel, inf)


def quantile(sorted_values: torch.Tensor, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) that keeps inf instead of nan."""
    pos = q * (sorted_values.numel() - 1)
    lo, hi = int(pos // 1), min(int(pos // 1) + 1, sorted_values.numel() - 1)
    a, b = float(sorted_values[lo]), float(sorted_values[hi])
    frac = pos - lo
    if frac == 0 or a == b:
        return a
    if b == float("inf"):
        return b  # interpolating towards a failure: inf - a would make nan
    return a + frac * (b - a)


def latent_recovery(z_hat: torch.Tensor, z: torch.Tensor) -> dict:
    """Summary of relative latent errors: success_* is the share strictly below each threshold; a
    non-finite z_hat counts as a failure with error inf, which enters median / p99 / max."""
    rel = relative_errors(z_hat, z).cpu()
    n = rel.numel()
    if n == 0:
        raise StudyError("latent_recovery needs at least one sample")
    ordered = rel.sort().values
    summary = {"n": n, "rel_err_median": quantile(ordered, 0.5), "rel_err_p99": quantile(ordered, 0.99),
               "rel_err_max": float(ordered[-1])}
    for key, threshold in SUCCESS_THRESHOLDS.items():
        summary[key] = float((rel < threshold).double().mean())
    summary["nonfinite"] = int((~torch.isfinite(z_hat.detach().reshape(n, -1))).any(1).sum())
    return summary


def rate_bounds(rate: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of a success rate measured on n samples: 0 of 50
    still allows up to 7.1% at 95%, so the study sizes its samples for the claims it makes."""
    from scipy.stats import beta

    if n < 1:
        raise StudyError(f"a rate needs at least one sample, got n={n}")
    k, tail = round(rate * n), (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03  # scikit-image's defaults


def _structural_similarity(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each pair of images (N, 784) in float64: scikit-image's with its defaults, batched (equal
    to it to ~1e-15); its mean over the windows inside the image is average pooling without padding."""
    a = a.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).double()
    b = b.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).double()

    def mean(t):
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    cov_norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)  # sample covariance
    ua, ub = mean(a), mean(b)
    va, vb = cov_norm * (mean(a * a) - ua * ua), cov_norm * (mean(b * b) - ub * ub)
    vab = cov_norm * (mean(a * b) - ua * ub)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    return s.flatten(1).mean(1)


def per_image_metrics(x_hat: torch.Tensor, x: torch.Tensor, *, bce: bool = True) -> dict[str, np.ndarray]:
    """bce, mse, psnr, ssim of each image (N,); nan for a non-finite x_hat. bce=False (no Bernoulli head,
    so not confined to [0, 1]): no BCE, and the others compare x_hat unclamped."""
    xh, xt = (t.detach().reshape(t.shape[0], -1).to(torch.float64).cpu() for t in (x_hat, x))
    finite = torch.isfinite(xh).all(dim=1)
    xh_safe = torch.where(finite[:, None], xh, torch.full_like(xh, 0.5))
    out = {}
    if bce:
        xh_safe = xh_safe.clamp(0, 1)
        out["bce"] = F.binary_cross_entropy(xh_safe, xt, reduction="none").mean(dim=1).numpy()
    out["mse"] = (xh_safe - xt).pow(2).mean(dim=1).numpy()
    with np.errstate(divide="ignore"):  # an exact reconstruction has infinite PSNR
        out["psnr"] = 10 * np.log10(1.0 / out["mse"])
    out["ssim"] = _structural_similarity(xh_safe, xt).numpy()
    for arr in out.values():
        arr[~finite.numpy()] = np.nan
    return out


def image_metrics(x_hat: torch.Tensor, x: torch.Tensor, *, bce: bool = True) -> dict[str, float]:
    """Means over images of per_image_metrics; `nonfinite` counts images left out as inf/nan."""
    per = per_image_metrics(x_hat, x, bce=bce)
    finite = np.isfinite(per["mse"])
    out = {k: float(np.mean(v[finite])) if finite.any() else float("nan") for k, v in per.items()}
    out["nonfinite"] = int((~finite).sum())
    return out
