"""Image reconstruction metrics of D(z_hat) against x, from library implementations.

bce and mse are per-pixel means (the original's convention); psnr and ssim come from
scikit-image, per image (data range 1), averaged over images. All four are also available
per image for gap-to-best comparisons.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(t.shape[0], -1).to(torch.float64).cpu()


def per_image_metrics(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, np.ndarray]:
    """bce, mse, psnr, ssim for each image (arrays of shape (N,)). Non-finite inputs give nan."""
    xh, xt = _flat(x_hat), _flat(x)
    finite = torch.isfinite(xh).all(dim=1)
    xh_safe = torch.where(finite[:, None], xh, torch.full_like(xh, 0.5)).clamp(0, 1)
    bce = F.binary_cross_entropy(xh_safe, xt, reduction="none").mean(dim=1).numpy()
    mse = (xh_safe - xt).pow(2).mean(dim=1).numpy()
    a, b = xh_safe.numpy().reshape(-1, 28, 28), xt.numpy().reshape(-1, 28, 28)
    psnr = np.array([peak_signal_noise_ratio(t, h, data_range=1.0) if m > 0 else np.inf
                     for h, t, m in zip(a, b, mse)])
    ssim = np.array([structural_similarity(t, h, data_range=1.0) for h, t in zip(a, b)])
    bad = ~finite.numpy()
    for arr in (bce, mse, psnr, ssim):
        arr[bad] = np.nan
    return {"bce": bce, "mse": mse, "psnr": psnr, "ssim": ssim}


def image_metrics(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """Means over images of bce, mse, psnr, ssim; `nonfinite` counts images left out as inf/nan."""
    per = per_image_metrics(x_hat, x)
    finite = np.isfinite(per["bce"])
    out = {k: float(np.mean(v[finite])) if finite.any() else float("nan") for k, v in per.items()}
    out["nonfinite"] = int((~finite).sum())
    return out
