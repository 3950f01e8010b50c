"""Failure-analysis measurements (notebook 04) on small decoders and hand-made images."""
import math

import decoders
import torch

from inverse_vae.study import failure


def small_decoder(scale=1.0, seed=0):
    return decoders.small_decoder(scale, seed, out=784)  # image-sized, for the analyses that assume 784 pixels


def realizable(dec, n=30, seed=1):
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        return z, dec.double()(z).float().double()  # through float32: realistic rounding


def test_pixel_extremes_counts_exact_zeros_and_ones():
    images = torch.full((4, 1, 28, 28), 0.5)
    images[0] = 0.0  # digit 0: all black
    images[1, 0, 0, 0] = 1.0  # digit 1: one white pixel
    labels = torch.tensor([0, 1, 1, 2])
    out = failure.pixel_extremes(images, labels)
    assert out["zero"] == 0.25 and out["one"] == 1 / (4 * 784)
    assert out["per_digit"][0]["zero"] == 1.0 and out["per_digit"][1]["one"] == 1 / (2 * 784)
    assert out["zero_map"].shape == (28, 28) and out["zero_map"][5, 5] == 0.25


def test_clamp_targets_and_best_eps():
    targets = failure.clamp_targets((1e-3, 0.0))
    assert math.isclose(targets[1e-3], math.log(1e-3 / (1 - 1e-3))) and targets[0.0] == -math.inf
    rows = [{"eps": 0.1, "real_bce": 0.5}, {"eps": 0.01, "real_bce": 0.3}, {"eps": 0.0, "real_bce": float("nan")}]
    assert failure.best_eps(rows) == 0.01


def test_domain_violations_zero_for_realizable_and_all_for_real_zero_pixels():
    dec = small_decoder()
    _, x = realizable(dec)
    clean = failure.domain_violations(dec.float(), x, eps=0.0)
    assert all(v["units"] == 0.0 for v in clean.values())
    black = torch.zeros(3, 784, dtype=torch.float64)  # logit(0) = -inf: nan downstream, all outside
    assert all(v["units"] == 1.0 for v in failure.domain_violations(dec, black, eps=0.0).values())


def test_projection_residual_is_zero_in_range_and_positive_outside():
    dec = small_decoder()
    _, x = realizable(dec)
    inside = failure.projection_residuals(dec, x, eps=0.0)
    assert inside["4:Linear"]["max"] < 1e-5  # float32 rounding of x only
    noise = torch.rand(30, 784, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.98 + 0.01
    outside = failure.projection_residuals(dec, noise, eps=0.0)
    assert outside["4:Linear"]["median"] > 0.5  # 32 dims of 784: almost all of a random y is thrown away


def test_atanh_amplification_is_capped_by_the_clamp():
    dec = small_decoder()
    with torch.no_grad():
        dec[2].weight.mul_(50.0)  # the second Tanh saturates ...
        dec[4].weight.mul_(0.1)  # ... while the pixels stay mid-range, so its values reach atanh intact
    _, x = realizable(dec)
    eps = 1e-3
    slopes = failure.atanh_amplification(dec, x, eps=eps)
    cap = 1 / (1 - (1 - eps) ** 2)
    assert all(v["max"] <= cap * (1 + 1e-9) for v in slopes.values())
    assert max(v["max"] for v in slopes.values()) > cap * 0.99
