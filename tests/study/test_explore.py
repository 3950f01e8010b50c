"""The explorer's measurement of one image (study/explore.py, notebook 98): a prior sample gets the chain's
error per step and a verdict charged to a step and cause; a real digit gets what arrives outside each
inverse's domain; the best inversion is the posterior mode for a real digit of a VAE, and the figure draws."""
from pathlib import Path

import matplotlib
import pytest
import torch

from inverse_vae.core.config import load_config
from inverse_vae.core.model import build_model
from inverse_vae.errors import StudyError
from inverse_vae.inversion.methods import MAP
from inverse_vae.study import explore

matplotlib.use("Agg")


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_config(ROOT / "params" / "smoke.yaml")).eval()


def test_a_prior_sample_in_float64_is_recovered_and_every_step_has_its_error(model):
    z = torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    found = explore.case(model, None, z, arithmetic="float64")
    assert found["verdict"] == "recovered" and found["rel_err"]["closed form"] < 1e-6
    assert all("rel_err" in step for step in found["steps"]) and len(found["steps"]) == len(model.decoder)
    assert set(found["latents"]) == {"encoder", "closed form", "best"}


def test_a_real_digit_shows_what_arrives_outside_each_domain_and_the_posterior_mode(model):
    x = torch.zeros(1, 784)
    x[0, 300:320] = 1.0  # a stroke: 0 and 1 lie outside the Sigmoid's open range
    found = explore.case(model, x, arithmetic="float32", clamp=False)
    assert "verdict" not in found and found["steps"][0]["outside"] > 0  # the first inverse step is the logit
    assert explore.best_method(model, realizable_image=False) == MAP
    assert explore.best_method(model, realizable_image=True) == explore.BEST["realizable"]
    figure = explore.draw(found, model, title="a stroke")
    assert len(figure.axes) == 6


def test_the_autoencoder_has_no_posterior_so_its_best_is_the_projection_with_a_prior(root):
    autoencoder = build_model(load_config(root / "params" / "deterministic.yaml"))
    assert explore.best_method(autoencoder, realizable_image=False) == explore.BEST["real without a posterior"]


@pytest.mark.parametrize("call, named", [
    (lambda m: explore.case(m, torch.zeros(1, 784), arithmetic="float16"),
     "arithmetic must be one of float32, float64, got 'float16'"),
    (lambda m: explore.case(m, [[0.0] * 784]), "x must be a torch.Tensor (1, 784) or (1, 1, 28, 28), got list"),
    (lambda m: explore.case(m, None, [[0.0] * m.latent_dim]), "z must be a torch.Tensor (1, "),
    (lambda m: explore.case(m, None, torch.zeros(1, m.latent_dim + 3)), "z must be one latent (1, "),
    (lambda m: explore.case(m, torch.zeros(2, 1, 28, 28)), "x must be one image (1, 784) or (1, 1, 28, 28), got shape "
                                                           "(2, 1, 28, 28), 2 of them: pass one, say x[:1]"),
])
def test_what_case_cannot_take_is_one_line_naming_it(model, call, named):
    with pytest.raises(StudyError) as refused:
        call(model)
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_the_figure_is_readable_no_text_under_9_points_and_no_two_labels_overlapping(model):
    x = torch.zeros(1, 784)
    x[0, 300:320] = 1.0
    for found in (explore.case(model, x, arithmetic="float32", clamp=True),
                  explore.case(model, None, torch.randn(1, model.latent_dim, dtype=torch.float64), arithmetic="float64")):
        figure = explore.draw(found, model, title="readable")
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        texts = [t for t in figure.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        assert min(t.get_fontsize() for t in texts) >= explore.READABLE
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        overlapping = [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:] if box.overlaps(other)]
        assert not overlapping, overlapping
        covering = [(t.get_text(), i) for t in texts for i, ax in enumerate(figure.axes)
                    if t.axes is not ax and t.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))]
        assert not covering, covering  # no title or label over another panel
