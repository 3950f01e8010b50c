"""The study's sections on the family's other models: what applies to a LeakyReLU decoder and to the
deterministic autoencoder (no Sigmoid, no prior), and what the library computes for them instead."""
from types import SimpleNamespace

import decoders
import numpy as np
import pytest
import torch
from torch import nn

from inverse_vae.core.table import ends_in_bernoulli, has_kind
from inverse_vae.inversion.methods import closed_form, optimize
from inverse_vae.inversion.plain import bce, plain_layers
from inverse_vae.metrics import image_metrics, per_image_metrics
from inverse_vae.study import applies, compare, evaluate, failure, invert


def autoencoder_decoder(seed: int = 0) -> nn.Sequential:
    """The autoencoder's decoder shape, small: Linear, LeakyReLU, Linear, no Sigmoid (float64)."""
    gen = torch.Generator().manual_seed(seed)
    dec = nn.Sequential(nn.Linear(4, 16, bias=False), nn.LeakyReLU(), nn.Linear(16, 40, bias=False)).double()
    with torch.no_grad():
        for layer in dec[::2]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
    return dec


class _Autoencoder(nn.Module):
    variational = False
    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.decoder = autoencoder_decoder()

    def forward(self, x, generator=None):
        z = x.reshape(len(x), -1)[:, :4]
        return self.decoder(z), z, None


def leaky_decoder() -> nn.Sequential:
    return decoders.seeded_decoder([4, 16, 32, 40], hidden=nn.LeakyReLU)


def _model(decoder, variational=True):
    return SimpleNamespace(decoder=decoder, variational=variational)


def test_applies_names_each_section_that_does_not_apply(capsys):
    tanh, leaky = decoders.small_decoder(), leaky_decoder()
    vae = applies.of(_model(tanh))
    assert all(vae(section) for section in applies.WHY_NOT) and capsys.readouterr().out == ""
    assert "VAE" in vae.describe() and "do not apply" not in vae.describe()
    on_leaky = applies.of(_model(leaky))
    assert not on_leaky.tanh and on_leaky.bce and on_leaky.holds("sigmoid") and on_leaky.holds("clamp")
    assert on_leaky.decoder == "Linear -> LeakyReLU -> Linear -> LeakyReLU -> Linear -> Sigmoid"
    assert not on_leaky("tanh")
    assert capsys.readouterr().out == f"does not apply: {applies.WHY_NOT['tanh']}\n"
    on_auto = applies.of(_Autoencoder())
    assert (on_auto.variational, on_auto.bce, on_auto.holds("sigmoid"), on_auto.tanh) == (False, False, False, False)
    assert [s for s in applies.WHY_NOT if on_auto.holds(s)] == []
    assert not on_auto("kl") and not on_auto("prior") and not on_auto("bce")
    said = capsys.readouterr().out.splitlines()
    assert said == [f"does not apply: {applies.WHY_NOT[s]}" for s in ("kl", "prior", "bce")]
    assert "no KL term" in said[0] and "BCE is undefined" in said[2]
    assert "deterministic autoencoder" in on_auto.describe() and applies.WHY_NOT["clamp"] in on_auto.describe()
    # a Sigmoid inside but no Sigmoid output: BCE does not apply, logit(0) does
    inside = applies.of(_model(nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8))))
    assert not inside.bce and inside.holds("sigmoid") and inside.holds("clamp")
    with pytest.raises(KeyError):
        vae("no_such_section")


def test_has_kind_looks_for_a_property_of_any_layers_kind():
    leaky = leaky_decoder()
    assert has_kind(leaky, "bernoulli") and has_kind(leaky, "two_sided") and ends_in_bernoulli(leaky)
    assert not has_kind(leaky, "boxed") and not has_kind(autoencoder_decoder(), "two_sided")
    assert not ends_in_bernoulli(autoencoder_decoder())


def test_the_realizable_latents_of_the_autoencoder_are_its_encoder_means():
    means = torch.zeros(3, 4)
    sources = invert.realizable_sources(None, _Autoencoder(), means)  # no prior sample: the run is not read
    assert list(sources) == ["encoder_mean"] and sources["encoder_mean"] is means


def test_image_metrics_leave_bce_out_and_do_not_clamp_an_unbounded_output():
    x = torch.full((3, 784), 0.5, dtype=torch.float64)
    x_hat = x + 1.0  # outside [0, 1]: MSE 1 as it is, 0.25 had it been clamped
    m = image_metrics(x_hat, x, bce=False)
    assert "bce" not in m and m["mse"] == pytest.approx(1.0) and m["psnr"] == pytest.approx(0.0)
    assert set(per_image_metrics(x_hat, x, bce=False)) == {"mse", "psnr", "ssim"}
    assert image_metrics(x_hat, x)["mse"] == pytest.approx(0.25)  # the default is unchanged


def test_test_losses_of_an_autoencoder_have_no_elbo():
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = _Autoencoder()
    model.decoder = nn.Sequential(nn.Linear(4, 784, bias=False))
    losses = evaluate.test_losses(model, x, 0.1, "mseloss", 4, 0)
    assert list(losses) == ["test_loss_original"] and np.isfinite(losses["test_loss_original"])


def test_the_methods_objective_is_least_squares_without_a_sigmoid():
    dec = autoencoder_decoder()
    layers, _, _ = plain_layers(dec, torch.float64)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = dec(z).detach() + 0.1
    assert torch.allclose(bce(layers, z, x), 0.5 * (dec(z) - x).pow(2).sum(1))
    # L-BFGS on it recovers a realizable latent from a nearby start.
    exact = dec(z).detach()
    found = optimize(dec, exact, method="lbfgs", steps=200, init=z + 0.01).z
    assert ((found - z).norm(dim=1) / z.norm(dim=1)).max() < 1e-6


def test_the_chain_is_exact_on_the_autoencoders_range():
    dec = autoencoder_decoder()
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z_hat = closed_form(dec, dec(z).detach(), dtype=torch.float64).z
    assert ((z_hat - z).norm(dim=1) / z.norm(dim=1)).max() < 1e-10


def test_invert_keeps_only_the_cases_that_apply():
    tanh, leaky, auto = decoders.small_decoder(), leaky_decoder(), autoencoder_decoder()
    assert list(invert.clamp_cases(tanh)) == ["", "_original_clamp"] == list(invert.clamp_cases(leaky))
    assert list(invert.clamp_cases(auto)) == [""] and list(invert.real_cases(auto)) == ["no_clamp"]
    assert list(invert.real_cases(tanh)) == ["original_clamp", "no_clamp"]
    every = invert.saturation_points()  # every kind of the table
    assert {a: {k: every[a][k] for k in ("tanh_to_1", "sigmoid_to_1", "sigmoid_to_0")} for a in every} \
        == invert.saturation_points(tanh)
    assert set(invert.saturation_points(leaky)["float32"]) == {"sigmoid_to_1", "sigmoid_to_0"}
    z = torch.randn(20, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid, _ = invert.realizable_grid(auto, {"encoder_mean": z})
    assert list(grid["encoder_mean"]) == ["float32", "float64"]
    assert grid["encoder_mean"]["float64"]["success_1e-6"] == 1.0


def test_failure_fixes_leave_out_the_atanh_box_without_tanh():
    assert "atanh box only" in failure.fix_inverters(1e-3, 1e-3, decoder=decoders.small_decoder())
    assert "atanh box only" not in failure.fix_inverters(1e-3, 1e-3, decoder=leaky_decoder())
    regimes = [r for r, _, _ in failure.residual_regimes(autoencoder_decoder(), None, None)]
    assert regimes == ["real, no clamp", "realizable, no clamp"]


def test_noise_is_not_clipped_for_an_unbounded_decoder_and_uses_the_latents_given():
    dec = autoencoder_decoder()
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = compare.noisy_images(dec, z, 0.1, seed=0)
    assert x.min() < 0 or x.max() > 1  # D(z) itself leaves [0, 1]
    assert compare.noisy_images(decoders.small_decoder().double(), z, 0.5, 0).max() <= 1
    assert compare.image_measure({"mse": 1.0}) == "mse" and compare.image_measure({"bce": 1.0, "mse": 1}) == "bce"


def test_methods_with_a_prior_do_not_apply_to_the_autoencoder(capsys):
    names = ["encoder", "optimize_lm", "hybrid_encoder_newton_tr_prior"]
    assert compare.applicable_methods(names, _Autoencoder()) == ["encoder", "optimize_lm"]
    assert capsys.readouterr().out.startswith("does not apply: hybrid_encoder_newton_tr_prior: z ~ N(0, I)")

    class Vae:
        variational = True

    assert compare.applicable_methods(names, Vae()) == names and capsys.readouterr().out == ""
