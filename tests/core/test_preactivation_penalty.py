"""train.preactivation_penalty (the `invertible` run) and the params `hypothesis`: the penalty term, its
effect on training, what the notebooks say of them, and that runs without them are untouched."""
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from inverse_vae.constants import NOTEBOOKS
from inverse_vae.core.checkpoints import fingerprint_changes, load_checkpoint, params_fingerprint
from inverse_vae.core.losses import original_loss, past_bound_share, preactivation_penalty
from inverse_vae.core.model import build_model
from inverse_vae.core.training import _batch_loss, train
from inverse_vae.runs.run import load_checked_config
from inverse_vae.study import shared

ROOT = Path(__file__).resolve().parents[2]


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()


def test_the_penalty_is_zero_within_the_bound_and_quadratic_past_it():
    tanh = nn.Tanh()
    inside = [(tanh, torch.tensor([-2.0, 0.0, 2.0])), (tanh, torch.tensor([[1.5, -1.5]]))]
    assert preactivation_penalty(inside, 2.0).item() == 0.0
    assert past_bound_share(inside, 2.0).item() == 0.0
    outside = [(tanh, torch.tensor([3.0, -4.0, 0.0, 1.0]))]  # excesses 1 and 2 over four units
    assert preactivation_penalty(outside, 2.0).item() == pytest.approx((1 + 4) / 4)
    assert past_bound_share(outside, 2.0).item() == 0.5


def test_a_sigmoid_is_bounded_on_its_bright_side_only():
    # logit amplifies float32 rounding near 1 only: a dark pixel's large negative input costs nothing.
    traced = [(nn.Sigmoid(), torch.tensor([-30.0, 0.0, 5.0]))]
    assert preactivation_penalty(traced, 4.0).item() == pytest.approx(1 / 3)
    assert past_bound_share(traced, 4.0).item() == pytest.approx(1 / 3)


def test_the_gradient_pulls_each_preactivation_back_to_the_bound_and_leaves_the_others():
    a = torch.tensor([3.0, -3.0, 1.0, -1.0], requires_grad=True)
    preactivation_penalty([(nn.Tanh(), a)], 2.0).backward()
    step = -a.grad  # the direction gradient descent moves a
    assert step[0] < 0 < step[1]  # |a| shrinks towards the bound from either side
    assert step[2] == step[3] == 0  # within the bound: no pull at all


def test_without_the_penalty_the_objective_is_the_original_bit_for_bit(tiny_run):
    torch.manual_seed(0)
    model = build_model(tiny_run.config)
    x = _images(16, 0)
    out, mean, log_var = model(x, torch.Generator().manual_seed(3))
    expected = original_loss(out, x, mean, log_var, 0.1)[0]
    assert torch.equal(_batch_loss(model, x, torch.Generator().manual_seed(3), alpha=0.1, kind="bceloss"), expected)


@pytest.mark.slow
def test_training_with_the_penalty_brings_the_preactivations_within_the_bound(tiny_run, tmp_path):
    # A bound far inside where this tiny model's pre-activations go, so that without the penalty many pass it.
    x, v = _images(128, 0), _images(64, 1)
    penalised = dataclasses.replace(tiny_run, dir=tmp_path / "penalised", config=tiny_run.config.replace(
        train={"preactivation_penalty": {"bound": 0.25, "weight": 100.0}}))
    plain = train(tiny_run, x, v, progress=False)
    result = train(penalised, x, v, progress=False)

    def share(model):
        with torch.no_grad():
            return past_bound_share(model.decode_traced(model.encode(v)[0])[1], 0.25).item()

    assert share(plain.model) > 0.1
    assert share(result.model) < share(plain.model) / 2
    history = result.history
    assert set(history) == {"train", "validation", "preactivation_penalty", "past_bound"}
    assert all(len(values) == 4 for values in history.values())
    assert history["past_bound"][-1] == pytest.approx(share(result.model))
    assert set(plain.history) == {"train", "validation"}  # readers of the original history see no new key


@pytest.mark.parametrize("run", ["default", "default_seed1", "squeezed"])
def test_committed_checkpoints_still_match_their_params(run):
    config = load_checked_config(ROOT / "params" / f"{run}.yaml")
    assert fingerprint_changes(load_checkpoint(ROOT / "reports" / run / "checkpoints" / "model_90.pt"), config) == []


def test_neither_an_absent_penalty_nor_the_hypothesis_enters_the_fingerprint(tiny_run):
    fingerprint = params_fingerprint(tiny_run.config)
    assert not any(key.startswith("train.preactivation_penalty") or key.startswith("hypothesis") for key in fingerprint)
    assert params_fingerprint(tiny_run.config.replace(hypothesis="the chain recovers z")) == fingerprint
    with_penalty = params_fingerprint(tiny_run.config.replace(train={"preactivation_penalty": {"bound": 3, "weight": 1}}))
    assert {k: v for k, v in with_penalty.items() if k not in fingerprint} == {
        "train.preactivation_penalty.bound": 3, "train.preactivation_penalty.weight": 1}


def test_every_notebook_shows_the_hypothesis_under_its_heading(tiny_run):
    run = dataclasses.replace(tiny_run, config=tiny_run.config.replace(hypothesis="  the closed form recovers z.\n"))
    for name in NOTEBOOKS:
        assert "**Hypothesis of this run, stated before its results:** the closed form recovers z." in \
            shared.describe(run, name)
    assert "Hypothesis" not in shared.describe(tiny_run, "03_invert")
    shown = shared.describe(dataclasses.replace(tiny_run, config=tiny_run.config.replace(hypothesis="<b>z</b> & x")),
                            "02_evaluate")
    assert "&lt;b&gt;z&lt;/b&gt; &amp; x" in shown and "<b>" not in shown  # shown, never rendered as HTML


@pytest.mark.parametrize("params, says", [
    ("default", ["a VAE on BCE averaged over pixels plus alpha 0.1"]),
    ("deterministic", ["a deterministic autoencoder (no KL term) on squared error"]),
    ("squeezed", ["a VAE on BCE", "towards targets squeezed into [0.1, 0.9]"]),
    ("invertible", ["a VAE on BCE", "pre-activation penalty", "train.preactivation_penalty"]),
])
def test_the_training_notebook_says_what_the_run_trains(tiny_run, params, says):
    config = load_checked_config(ROOT / "params" / f"{params}.yaml")
    text = shared.describe(dataclasses.replace(tiny_run, config=config), "01_train")
    trains = next(line for line in text.split("\n\n") if line.startswith("**Trains**"))
    assert all(s in trains for s in says), trains
    assert ("penalty" in trains) == (params == "invertible")
    assert "**Trains**" not in shared.describe(dataclasses.replace(tiny_run, config=config), "02_evaluate")


@pytest.mark.slow
def test_a_penalised_run_resumes_to_the_same_weights_and_history(tiny_run, tmp_path):
    x, v = _images(128, 0), _images(32, 1)
    config = tiny_run.config.replace(train={"preactivation_penalty": {"bound": 0.5, "weight": 10.0}})
    whole = train(dataclasses.replace(tiny_run, config=config, dir=tmp_path / "whole"), x, v, progress=False)
    split = dataclasses.replace(tiny_run, config=config, dir=tmp_path / "split")
    train(split, x, v, progress=False, stop_after_epoch=2)
    resumed = train(split, x, v, progress=False)
    assert resumed.start_epoch == 3 and resumed.history == whole.history
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
