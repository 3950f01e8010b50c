"""The methods comparison (notebook 05) on a small random VAE: shapes, gaps, noise, identifiability."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_vae.core.config import load_config
from inverse_vae.core.model import build_model
from inverse_vae.study import compare as comparison


@pytest.fixture
def model(root):
    torch.manual_seed(0)
    return build_model(load_config(root / "params" / "smoke.yaml")).eval()


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


def test_findings_follow_the_numbers():
    from inverse_vae.study.compare import fast_vs_adam10, findings

    real = {"optimize_adam_10restarts": {"bce": 0.2, "seconds": 100.0},
            "hybrid_encoder_lm": {"bce": 0.1, "seconds": 10.0}, "layerwise_constrained": {"bce": 0.3, "seconds": 1.0},
            "encoder": {"bce": 0.05, "seconds": 0.1}}
    verdict = fast_vs_adam10(real)
    assert verdict == {"method": "hybrid_encoder_lm", "bce_ratio_to_adam10": 0.5, "speedup_vs_adam10": 10.0}
    assert fast_vs_adam10({"encoder": {"bce": 1.0, "seconds": 1.0}}) is None
    # Paired: Adam ran on the first 2 images only; the others are compared on those two, per image in time.
    per_image = {"optimize_adam_10restarts": {"bce": np.array([0.4, 0.4])},
                 "hybrid_encoder_lm": {"bce": np.array([0.1, 0.1, 9.0, 9.0])},
                 "layerwise_constrained": {"bce": np.array([0.3, 0.3, 0.3, 0.3])}}
    sized = {"optimize_adam_10restarts": {"bce": 0.4, "seconds": 20.0, "n": 2},
             "hybrid_encoder_lm": {"bce": 4.55, "seconds": 4.0, "n": 4},
             "layerwise_constrained": {"bce": 0.3, "seconds": 4.0, "n": 4}}
    assert fast_vs_adam10(sized, per_image) == {"method": "hybrid_encoder_lm", "bce_ratio_to_adam10": 0.25,
                                                "speedup_vs_adam10": 10.0, "n_paired": 2}

    def rec(gd, lw):
        return {"optimize_adam": {"float64": {"success_1e-6": gd}}, "layerwise_constrained": {"float64": {"success_1e-6": lw}}}

    best = {"float64": {"method": "hybrid_layerwise_lm_retry", "success_1e-6": 1.0}}
    lines = findings(verdict, best, rec(0.0, 0.0))
    assert lines[0].startswith("On real images, hybrid_encoder_lm reaches a mean BCE 0.500x") and "10.0x faster" in lines[0]
    assert "recovers 100.0% of prior samples (success_1e-6)" in lines[1]
    assert "half confirmed here" in lines[2] and "hybrid_layerwise_lm_retry is what recovers z" in lines[2]
    assert "half confirmed here" in findings(None, {}, rec(0.0, 0.002))[0]  # 2 of 1,000 is no success
    assert findings(None, {}, rec(0.1, 0.5))[0].endswith("is confirmed here.")
    assert findings(None, {}, rec(0.5, 0.1))[0].endswith("is not confirmed here.")


def test_saturation_marks_follow_the_activation_after_each_linear():
    from torch import nn

    from inverse_vae.study.invert import saturation_marks

    decoder = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3), nn.Identity(), nn.Linear(3, 4), nn.Sigmoid())
    points = {"float32": {"tanh_to_1": 9.0, "sigmoid_to_1": 17.0}, "float64": {"tanh_to_1": 19.0, "sigmoid_to_1": 37.0}}
    assert saturation_marks(decoder, points) == {
        "0:Linear": {"tanh=±1 in float32": 9.0, "tanh=±1 in float64": 19.0},
        "2:Linear": {},
        "4:Linear": {"sigmoid=1 in float32": 17.0, "sigmoid=1 in float64": 37.0},
    }


@pytest.mark.parametrize("run", ["default", "constrained", "deterministic"])
def test_the_posterior_sentences_are_the_committed_reports(run):
    """compare.posterior_findings, from a run's metrics, writes the sentences its executed notebook 05 shows."""
    root = Path(__file__).resolve().parents[2] / "reports" / run
    metrics = json.loads((root / "metrics" / "05_inverse_methods.json").read_text())
    real = {name: values["real"] for name, values in metrics["methods"].items() if values.get("real")}
    lines = comparison.posterior_findings(real, metrics.get("posterior", {}))
    findings_cell = json.loads((root / "05_inverse_methods.ipynb").read_text())["cells"][-1]
    shown = "".join(findings_cell["outputs"][0]["data"]["text/markdown"])
    assert (len(lines) == 2) == (run != "deterministic")  # the autoencoder has no posterior
    assert all(f"* {line}" in shown.splitlines() for line in lines)
    assert ("pixel-optimal z exists only at infinity" in shown) == bool(lines)
