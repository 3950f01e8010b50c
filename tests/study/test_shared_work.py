"""The study's speed-ups keep their numbers: work shared between methods and notebooks, sample
sizes with their intervals, the batched SSIM, and the Jacobian without torch.func."""
import copy

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim

from inverse_vae.core.checkpoints import save_checkpoint
from inverse_vae.core.config import load_config
from inverse_vae.core.model import build_model
from inverse_vae.errors import StudyError
from inverse_vae.inversion import methods
from inverse_vae.metrics import _structural_similarity, per_image_metrics, rate_bounds
from inverse_vae.study import compare


@pytest.fixture
def model(root):
    torch.manual_seed(0)
    return build_model(load_config(root / "params" / "smoke.yaml")).eval()


def test_ssim_equals_scikit_image_on_every_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 784, generator=g, dtype=torch.float64)
    x[:5] = 0  # flat images: the constants carry SSIM
    x_hat = (x + 0.2 * torch.randn(40, 784, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = _structural_similarity(x_hat, x).numpy()
    theirs = [skimage_ssim(t.reshape(28, 28).numpy(), h.reshape(28, 28).numpy(), data_range=1.0)
              for h, t in zip(x_hat, x)]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert _structural_similarity(x, x).numpy() == pytest.approx(1.0)


def test_psnr_of_an_exact_reconstruction_is_infinite_and_finite_elsewhere():
    x = torch.rand(3, 784, generator=torch.Generator().manual_seed(1))
    x_hat = x.clone()
    x_hat[1] += 0.1
    psnr = per_image_metrics(x_hat.clamp(0, 1), x)["psnr"]
    assert np.isinf(psnr[0]) and np.isinf(psnr[2]) and np.isfinite(psnr[1])


@pytest.mark.parametrize("rate, n, low, high", [(0.0, 50, 0.0, 0.0711), (1.0, 500, 0.9926, 1.0), (0.5, 100, 0.3983, 0.6017)])
def test_rate_bounds_are_clopper_pearson(rate, n, low, high):
    lo, hi = rate_bounds(rate, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_a_rate_needs_a_sample():
    with pytest.raises(StudyError, match="at least one sample"):
        rate_bounds(0.0, 0)


def test_slow_methods_run_on_slow_n_samples_with_wider_intervals(model):
    z = torch.randn(12, model.latent_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    overrides = {"optimize_adam": {"steps": 5}}
    table, errors = compare.realizable_comparison(["closed_form", "optimize_adam"], model, z, overrides, slow_n=4)
    assert table["closed_form"]["float64"]["n"] == 12 and table["optimize_adam"]["float64"]["n"] == 4
    assert errors[("optimize_adam", "float32")].shape == (4,)
    lo, hi = table["optimize_adam"]["float64"]["success_1e-6_ci95"]
    assert 0 <= lo <= table["optimize_adam"]["float64"]["success_1e-6"] <= hi <= 1
    assert compare.sample_size("closed_form", 12, 4) == 12 and compare.sample_size("optimize_adam", 12, None) == 12


def test_the_layerwise_start_runs_once_per_batch_and_gives_the_same_numbers(model, monkeypatch):
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(3))
    names = ["layerwise_constrained", "hybrid_layerwise_lm"]
    alone = methods.run_method("hybrid_layerwise_lm", None, x, model, steps=3)
    calls = []
    real = methods.layerwise_constrained
    monkeypatch.setattr(methods, "layerwise_constrained", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, _, results = compare.real_comparison(names, model, x, np.zeros(6), None, {"hybrid_layerwise_lm": {"steps": 3}})
    assert len(calls) == 1
    assert torch.equal(results["hybrid_layerwise_lm"].z, alone.z)


def test_a_start_computed_in_another_dtype_is_not_reused(model):
    x = torch.rand(4, 784, generator=torch.Generator().manual_seed(4))
    starts = {}
    methods.run_method("hybrid_encoder_lm", None, x, model, starts=starts, steps=2)
    methods.run_method("hybrid_encoder_lm", None, x, model, starts=starts, steps=2, dtype=torch.float64)
    assert set(starts) == {("encoder", None), ("encoder", torch.float64)}


def test_jacobian_singular_values_equal_torch_func(model):
    z = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dec = copy.deepcopy(model.decoder).double()
    reference = torch.linalg.svdvals(torch.func.vmap(torch.func.jacfwd(lambda v: dec(v[None])[0]))(z))
    torch.testing.assert_close(compare.jacobian_singular_values(model.decoder, z), reference.detach(), rtol=1e-10,
                               atol=1e-12)


def test_a_missing_companion_run_is_left_out_in_one_line(tiny_run, write_params, default_raw, capsys):
    from inverse_vae.study import shared

    assert shared.companion_model(tiny_run, None, "squeezed targets") is None
    other = write_params(default_raw, "never_trained_companion")
    assert shared.companion_model(tiny_run, str(other), "squeezed targets") is None
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "is not trained" in out and "run_all.sh" in out


def test_the_means_embedding_is_computed_once_per_run(tiny_run, monkeypatch):
    from inverse_vae.study import shared

    tiny_run.dir.mkdir(parents=True)
    save_checkpoint({"epoch": 1, "model_state_dict": {"w": torch.ones(2)}, "history": {}}, tiny_run.dir / "model.pt")
    monkeypatch.setattr(type(tiny_run), "model_file", property(lambda run: run.dir / "model.pt"))
    means = torch.randn(120, 4, generator=torch.Generator().manual_seed(6))
    calls = []
    monkeypatch.setattr(shared, "embed_2d", lambda z, *a: calls.append(1) or np.asarray(z[:, :2], dtype=float))
    first = shared.means_embedding(tiny_run, means, 100)
    again = shared.means_embedding(tiny_run, means, 100)
    assert len(calls) == 1 and first.shape == (100, 2) and np.array_equal(first, again)
    shared.means_embedding(tiny_run, means, 110)  # another size: computed again
    assert len(calls) == 2


def test_the_scipy_peer_runs_behind_optimize_and_agrees_with_newton_tr(model):
    from inverse_vae.inversion.solvers import optimize

    x = torch.rand(4, 784, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z0 = torch.zeros(4, model.latent_dim, dtype=torch.float64)
    peer = optimize(model.decoder, x, method="scipy_lm", init=z0, prior_weight=0.01, dtype=torch.float64)
    ours = optimize(model.decoder, x, method="newton_tr", init=z0, prior_weight=0.01, dtype=torch.float64)
    assert bool(peer.info["converged"].all()) and peer.info["iterations"].shape == (4,)
    torch.testing.assert_close(ours.info["objective"], peer.info["objective"], rtol=1e-6, atol=0)
    assert torch.get_num_threads() >= 1  # SciPy's single thread was given back


def test_budget_vs_converged_pairs_each_start_with_its_converged_projection(model):
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(8))
    names = ["hybrid_encoder_lm", "hybrid_encoder_newton_tr_prior", "peer_scipy_lm_prior"]
    real, _, results = compare.real_comparison(names, model, x, np.zeros(5), None,
                                               {"hybrid_encoder_lm": {"steps": 3}})
    rows = compare.budget_vs_converged(real, results)
    assert list(rows) == ["encoder"]  # the other starts' methods did not run
    row = rows["encoder"]
    assert row["bce_gap"] == pytest.approx(row["budget_bce"] - row["converged_bce"])
    assert row["within_0.1%_of_scipy"] == 1.0
    assert "SciPy" in compare.findings(None, {}, {}, rows)[0]


def test_slow_methods_run_on_the_first_real_images_and_their_gap_is_on_those(model):
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(9))
    real, per_image, results = compare.real_comparison(["encoder", "optimize_adam"], model, x, np.arange(5) % 2, None,
                                                       {"optimize_adam": {"steps": 3}}, slow_n=2)
    assert real["encoder"]["n"] == 5 and real["optimize_adam"]["n"] == 2 and len(results["optimize_adam"].z) == 2
    best = np.minimum(per_image["encoder"]["bce"][:2], per_image["optimize_adam"]["bce"])
    assert real["optimize_adam"]["gap_to_best"] == pytest.approx(float(np.mean(per_image["optimize_adam"]["bce"] - best)))
    curves = compare.curves_per_pixel(results)
    last = [h for h in results["optimize_adam"].history if h.get("bce") is not None][-1]
    assert curves["optimize_adam"][-1][0] == pytest.approx(last["seconds"] / 2)  # per image: 2 images
