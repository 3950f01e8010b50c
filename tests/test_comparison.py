"""The methods comparison (notebook 05) on a small random VAE: shapes, gaps, noise, identifiability."""
import numpy as np
import pytest
import torch

from inverse_vae import comparison
from inverse_vae.model import build_model
from inverse_vae.params import load_params


@pytest.fixture
def model(root):
    torch.manual_seed(0)
    return build_model(load_params(root / "params" / "smoke.yaml")).eval()


def test_real_comparison_table_and_gaps(model):
    x = (torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    table, per_image, results = comparison.real_comparison(["closed_form", "encoder"], model, x, np.arange(6) % 2,
                                                           None, {})
    assert set(table) == {"closed_form", "encoder"}
    gaps = np.stack([per_image[n]["bce"] for n in table])
    assert (gaps.min(axis=0) > 0).all()  # BCE itself, per image
    assert all(table[n]["gap_to_best"] >= 0 for n in table)
    # The gaps are measured from the per-image best: averaged over methods weighted by who wins, they add up.
    assert sum(table[n]["gap_to_best"] for n in table) == pytest.approx(float(np.abs(gaps[0] - gaps[1]).mean()))
    assert table["encoder"]["images_per_second"] > 0 and np.isnan(table["encoder"]["probe_accuracy"])  # no probe given


def test_noisy_images_have_the_requested_relative_noise(model):
    z = torch.randn(5, model.latent_dim, dtype=torch.float64)
    clean = comparison.noisy_images(model.decoder, z, 1e-12, seed=0)
    noisy = comparison.noisy_images(model.decoder, z, 1e-2, seed=0)
    ratio = (noisy - clean).norm(dim=1) / clean.norm(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 1e-2), rtol=1e-3)  # sigmoid outputs: no clipping here


def test_jacobian_singular_values_match_finite_differences(model):
    z = torch.randn(2, model.latent_dim, dtype=torch.float64)
    s = comparison.jacobian_singular_values(model.decoder, z)
    dec = model.decoder.double()
    h = 1e-6
    with torch.no_grad():
        cols = [(dec(z[:1] + h * e) - dec(z[:1] - h * e))[0] / (2 * h) for e in torch.eye(model.latent_dim, dtype=torch.float64)]
    fd = torch.linalg.svdvals(torch.stack(cols, dim=1))
    model.decoder.float()
    assert s.shape == (2, model.latent_dim)
    assert torch.allclose(s[0], fd, rtol=1e-5, atol=1e-9)


def test_identifiability_splits_missed_and_recovered(model):
    z = torch.randn(4, model.latent_dim, dtype=torch.float64)
    out = comparison.identifiability(model.decoder, z, torch.tensor([True, False, False, False]))
    assert out["missed"]["n"] == 1 and out["recovered"]["n"] == 3
    assert out["missed"]["condition_median"] >= 1
    assert comparison.identifiability(model.decoder, z, torch.zeros(4, dtype=torch.bool))["missed"] == {"n": 0}
