"""The study-level inversion experiments (notebook 03) on small decoders built here."""
import math

import numpy as np
import torch
from decoders import small_decoder

from inverse_vae.study import invert as inversion


def prior(n=200, d=4, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_realizable_float64_without_clamp_is_exact_on_a_tame_decoder():
    summary, attribution = inversion.realizable_case(small_decoder(), prior(), "float64", eps=0.0)
    assert summary["success_1e-6"] == 1.0 and summary["rel_err_max"] < 1e-10
    assert summary["failures"] == [] and attribution["n_failed"] == 0
    assert [s["layer"] for s in summary["step_errors"]] == [5, 4, 3, 2, 1, 0]


def test_a_wide_clamp_is_named_as_the_cause():
    summary, _ = inversion.realizable_case(small_decoder(scale=3.0), prior(), "float64", eps=0.2)
    assert summary["success_1e-6"] < 1.0
    causes = {f["cause"] for f in summary["failures"]}
    assert "clamped" in causes
    assert sum(f["count"] for f in summary["failures"]) == summary["n_failed"]


def test_grid_has_every_source_and_case():
    summaries, _ = inversion.realizable_grid(small_decoder(), {"prior": prior(50)})
    assert set(summaries["prior"]) == {"float32", "float32_original_clamp", "float64", "float64_original_clamp"}
    assert summaries["prior"]["float64_original_clamp"]["eps"] == inversion.ORIGINAL_EPS
    assert summaries["prior"]["float64"]["eps"] == 0.0


def test_saturation_points_are_where_the_function_first_rounds_to_its_limit():
    points = inversion.saturation_points()
    for name, dtype in inversion.ARITHMETICS.items():
        a = torch.tensor(points[name]["tanh_to_1"], dtype=dtype)
        assert torch.tanh(a).item() == 1.0
        assert torch.tanh(torch.nextafter(a, torch.tensor(0.0, dtype=dtype))).item() < 1.0
        assert torch.sigmoid(torch.tensor(points[name]["sigmoid_to_0"], dtype=dtype)).item() == 0.0
    assert 8 < points["float32"]["tanh_to_1"] < 10 and 18 < points["float64"]["tanh_to_1"] < 20


def test_saturated_share_sees_saturation():
    points = inversion.saturation_points()
    tame = inversion.saturated_share(small_decoder(), prior(), points)
    wild = inversion.saturated_share(small_decoder(scale=30.0), prior(), points)
    assert tame["1:Tanh"]["float64"]["units"] == 0.0
    assert wild["1:Tanh"]["float32"]["units"] > 0.1
    assert wild["1:Tanh"]["float32"]["units"] >= wild["1:Tanh"]["float64"]["units"]


def test_distance_to_handles_all_nonfinite():
    ref = torch.ones(3, 4)
    out = inversion.distance_to(torch.full((3, 4), float("inf")), ref)
    assert out["n_finite"] == 0 and math.isnan(out["rel_dist_median"])
    out = inversion.distance_to(ref * 2, ref)
    assert out["rel_dist_median"] == 1.0 and out["z_hat_norm_median"] == 4.0


def test_preactivations_are_the_linear_outputs():
    dec = small_decoder()
    z = prior(10)
    pre = inversion.preactivations(dec, z)
    assert list(pre) == ["0:Linear", "2:Linear", "4:Linear"]
    expected = (z.double() @ dec[0].weight.detach().double().T).numpy().ravel()
    assert np.allclose(pre["0:Linear"], expected)


def test_failure_frame_with_and_without_failures():
    clean, _ = inversion.realizable_grid(small_decoder(), {"prior": prior(30)})
    clean = {"prior": {k: v for k, v in clean["prior"].items() if not v["failures"]}}
    assert inversion.failure_frame(clean).shape[1] == 0
    failing, _ = inversion.realizable_grid(small_decoder(scale=3.0), {"prior": prior(30)})
    frame = inversion.failure_frame(failing)
    assert len(frame) == 4
    assert frame.to_numpy().sum() == sum(v["n_failed"] for v in failing["prior"].values())
