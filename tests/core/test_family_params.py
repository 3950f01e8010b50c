"""The family of runs in params/: every file passes check-params and builds a model that runs, and each
variant names default.yaml as its base, gives only what it changes, and differs from it in exactly what its
header says."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from inverse_vae.core.config import _read_yaml
from inverse_vae.core.model import VAE, Autoencoder, build_model
from inverse_vae.runs.run import load_checked_config

ROOT = Path(__file__).resolve().parents[2]
PARAMS = sorted((ROOT / "params").glob("*.yaml"))
FAMILY = ("default_seed1", "default_seed2", "latent16", "leaky", "squeezed", "deterministic", "invertible")
# The original's last config.yaml, kept whole and unchanged in every value (its header says so): no base.
WHOLE = ("deterministic",)
MAX_SETTING_LINES = 20


def _flat(node, prefix: str = "") -> dict:
    """A config's every value by its dotted params key (the study's sections included): mappings flattened."""
    out = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


COMPANION = "failure.squeezed_params"  # only the default run compares the squeezed run's model


def _differences(name: str) -> dict:
    """{key: (default's value, this file's)} for every params key whose value differs from default.yaml's
    (but the squeezed companion, which test_only_the_default_compares_the_squeezed_run checks)."""
    default, other = (_flat(load_checked_config(ROOT / "params" / f"{n}.yaml").to_dict()) for n in ("default", name))
    return {k: (default.get(k), other.get(k)) for k in sorted(default.keys() | other.keys())
            if default.get(k) != other.get(k) and k != COMPANION}


def test_only_the_default_compares_the_squeezed_run():
    companions = {p.stem: _flat(load_checked_config(p).to_dict())[COMPANION] for p in PARAMS}
    assert companions.pop("default") == "params/squeezed.yaml"
    assert set(companions.values()) == {None}, companions


def test_the_family_is_there():
    assert {p.stem for p in PARAMS} >= {"default", "smoke", *FAMILY}


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.stem)
def test_params_file_checks_builds_and_runs(path):
    config = load_checked_config(path)
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert isinstance(model, VAE if config.train.variational else Autoencoder)
    assert isinstance(model.decoder, nn.Sequential)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        out, latent, log_var = model(x, torch.Generator().manual_seed(0))
        z, _ = model.encode(x)
    assert out.shape == (3, 1, 28, 28) and bool(torch.isfinite(out).all())
    assert z.shape == latent.shape == (3, model.latent_dim)
    assert (log_var is None) == (not config.train.variational)
    if config.model.architecture.decoder[-1].name == "Sigmoid":
        assert bool(((out >= 0) & (out <= 1)).all())


@pytest.mark.parametrize("name", FAMILY)
def test_each_variant_has_a_header_that_names_what_differs(name):
    first = (ROOT / "params" / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 40


def _setting_lines(text: str) -> list[str]:
    """The lines that set something: not blank, not a comment, not the hypothesis (its key and its folded text)."""
    lines, in_hypothesis = [], False
    for line in text.splitlines():
        if line.strip() and not line.startswith((" ", "\t")):
            in_hypothesis = line.startswith("hypothesis:")
        if line.strip() and not line.lstrip().startswith("#") and not in_hypothesis:
            lines.append(line)
    return lines


@pytest.mark.parametrize("name", [n for n in FAMILY if n not in WHOLE])
def test_each_variant_names_the_default_as_base_and_gives_only_what_it_changes(name):
    path = ROOT / "params" / f"{name}.yaml"
    assert _read_yaml(path)["base"] == "default.yaml"
    settings = _setting_lines(path.read_text())
    assert len(settings) <= MAX_SETTING_LINES, settings
    assert settings[0] == "base: default.yaml"


def test_setting_lines_leave_out_comments_and_the_hypothesis():
    text = "# header\nbase: default.yaml\ntrain:\n  # why\n  alpha: 0.5\nhypothesis: >-\n  a claim\n  more\nseed: 1\n"
    assert _setting_lines(text) == ["base: default.yaml", "train:", "  alpha: 0.5", "seed: 1"]


def test_the_whole_file_variant_is_still_the_originals_config():
    text = (ROOT / "params" / "deterministic.yaml").read_text()
    assert "base" not in _read_yaml(ROOT / "params" / "deterministic.yaml")
    assert "unchanged in every value" in text.split("\ndevice:")[0]  # the header says why it is kept whole


@pytest.mark.parametrize("name, expected", [
    ("default_seed1", {"seed": (0, 1)}),
    ("default_seed2", {"seed": (0, 2)}),
    ("squeezed", {"train.target_range": (None, [0.1, 0.9])}),
])
def test_variants_differ_from_default_only_where_they_say(name, expected):
    assert _differences(name) == expected


def test_latent16_is_the_readme_printout():
    diff = _differences("latent16")
    assert set(diff) == {"model.architecture.encoder.mean", "model.architecture.encoder.log_var",
                         "model.architecture.decoder"}
    model = build_model(load_checked_config(ROOT / "params" / "latent16.yaml"))
    assert model.latent_dim == 16
    assert model.encoder_mean[0].weight.shape == model.encoder_log_var[0].weight.shape == (16, 256)
    assert model.decoder[0].weight.shape == (256, 16)


def test_leaky_replaces_the_decoders_tanh_only():
    assert set(_differences("leaky")) == {"model.architecture.decoder"}
    model = build_model(load_checked_config(ROOT / "params" / "leaky.yaml"))
    assert [type(m).__name__ for m in model.decoder] == ["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear",
                                                        "Sigmoid"]
    assert all(m.negative_slope == 0.01 for m in model.decoder if isinstance(m, nn.LeakyReLU))  # the original's inverse
    assert [type(m).__name__ for m in model.encoder_conv] == ["Linear", "Tanh", "Linear", "Tanh", "Flatten"]


def test_deterministic_differs_in_model_and_loss():
    diff = _differences("deterministic")
    assert diff.pop("train.loss") == (["bceloss", "regularizationloss"], ["mseloss"])
    assert set(diff) == {"model.architecture.encoder.conv", "model.architecture.encoder.mean",
                         "model.architecture.encoder.log_var", "model.architecture.decoder"}


def test_invertible_adds_the_penalty_and_states_its_hypothesis_before_its_results():
    diff = _differences("invertible")
    default_hypothesis, hypothesis = diff.pop("hypothesis")
    assert diff == {"train.preactivation_penalty.bound": (None, 2.0), "train.preactivation_penalty.weight": (None, 30.0)}
    assert default_hypothesis is None
    # concrete, falsifiable claims: the recovery in both arithmetics, real images against the encoder, the cost
    assert all(claim in hypothesis for claim in ("99% of prior z", "in float32", "encoder's", "15% above"))
    assert "\n" not in hypothesis  # a folded YAML scalar: one paragraph for the notebooks' first cell


@pytest.mark.slow  # subprocesses that load torch and check the params in full
def test_check_params_command_accepts_them():
    files = [f"params/{name}.yaml" for name in FAMILY]
    done = subprocess.run([sys.executable, "-m", "inverse_vae", "check-params", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{f}: ok" for f in files]
