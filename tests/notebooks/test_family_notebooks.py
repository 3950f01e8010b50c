"""Notebooks 02-05 on the family's other models, at smoke size (tests/params/): the VAE with a
LeakyReLU decoder and the deterministic autoencoder. No error cell; each section that does not apply
says so in one line and writes no metric (the key absent); what applies is finite and what is true."""
import json
import math
from pathlib import Path

import nbformat
import pytest
from conftest import execute_notebooks

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _study(tmp_path_factory, name: str) -> Path:
    return execute_notebooks(f"tests/params/{name}.yaml", tmp_path_factory.mktemp("family"))


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory) -> Path:
    return _study(tmp_path_factory, "smoke_autoencoder")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> Path:
    return _study(tmp_path_factory, "smoke_leaky")


def _outputs(run: Path, notebook: str) -> tuple[str, list]:
    """(the printed text of every cell, the error outputs) of an executed notebook."""
    nb = nbformat.read(run / f"{notebook}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    return text, [o for o in outputs if o.output_type == "error"]


def _metrics(run: Path, notebook: str) -> dict:
    """A notebook's metrics (written with sorted keys: compare sets, not lists)."""
    return json.loads((run / "metrics" / f"{notebook}.json").read_text())


NOTEBOOKS = ("02_evaluate", "03_invert", "04_failure_analysis", "05_inverse_methods")

AUTOENCODER_LINES = {
    "02_evaluate": ["the autoencoder has no KL term", "BCE is undefined", "z ~ N(0, I) is not the autoencoder's"],
    "03_invert": ["z ~ N(0, I) is not the autoencoder's", "no Sigmoid or Tanh, so its inverse needs no clamp",
                  "BCE is undefined"],
    "04_failure_analysis": ["logit(0) = -inf never arises", "no Sigmoid or Tanh", "the decoder has no Tanh"],
    "05_inverse_methods": ["hybrid_encoder_newton_tr_prior: z ~ N(0, I)", "BCE is undefined"],
}
# Every notebook says once, in its opening line, which sections do not apply to the run's model (a section
# may also say it where it is skipped): for the LeakyReLU decoder, only what concerns Tanh.
LEAKY_LINES = {notebook: ["the decoder has no Tanh"] for notebook in NOTEBOOKS}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_autoencoder_notebooks_run_and_say_what_does_not_apply(autoencoder, notebook):
    text, errors = _outputs(autoencoder, notebook)
    assert not errors
    for line in AUTOENCODER_LINES[notebook]:
        assert line in text, line
    assert all(line.startswith("does not apply: ") for line in text.splitlines() if "does not apply" in line)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_leaky_notebooks_run_and_say_what_does_not_apply(leaky, notebook):
    text, errors = _outputs(leaky, notebook)
    assert not errors
    said = [line for line in text.splitlines() if "does not apply" in line or "do not apply" in line]
    expected = LEAKY_LINES.get(notebook, [])
    assert all(any(e in line for e in expected) for line in said)  # only what is about Tanh
    assert all(any(e in line for line in said) for e in expected)


def test_autoencoder_metrics_that_do_not_apply_are_absent(autoencoder):
    evaluation = _metrics(autoencoder, "02_evaluate")
    assert not {"nelbo_nats", "bce_nats", "kl_nats"} & set(evaluation) and "test_loss_original" in evaluation
    assert "bce" not in evaluation["reconstruction"] and "bce" not in evaluation["per_digit"]["0"]
    assert not (autoencoder / "figures" / "random_generation.png").exists()
    inversion = _metrics(autoencoder, "03_invert")
    assert set(inversion["realizable"]) == {"encoder_mean"} and set(inversion["real"]) == {"no_clamp", "encoder"}
    assert set(inversion["realizable"]["encoder_mean"]) == {"float32", "float64"}
    assert not {"saturation_points", "n_prior"} & set(inversion) and not any(k.startswith("saturated") for k in inversion)
    failure = _metrics(autoencoder, "04_failure_analysis")
    absent = {"clamp_targets", "decoder_logits_at_zero_pixels", "clamp_sweep", "eps_best", "atanh_domain", "fixes"}
    assert not absent & set(failure) and {"pixels", "singular_values", "projection_residual_median"} <= set(failure)
    methods = _metrics(autoencoder, "05_inverse_methods")
    assert "budget_vs_converged" not in methods and "hybrid_encoder_newton_tr_prior" not in methods["methods"]
    assert all("bce" not in m["real"] for m in methods["methods"].values() if m["real"])
    assert "bce_ratio_to_adam10" not in methods["fast_vs_adam10"]


def test_autoencoder_metrics_that_apply_are_finite_and_true(autoencoder):
    evaluation = _metrics(autoencoder, "02_evaluate")
    assert 0 < evaluation["test_loss_original"] < 0.1 and evaluation["reconstruction"]["psnr"] > 10
    assert evaluation["probe_accuracy"] > 0.5
    # LeakyReLU and the tall Linear layers have exact pseudo-inverses on the decoder's range.
    realizable = _metrics(autoencoder, "03_invert")["realizable"]["encoder_mean"]
    assert realizable["float64"]["success_1e-6"] == 1.0 and realizable["float32"]["success_1e-4"] == 1.0
    residuals = _metrics(autoencoder, "04_failure_analysis")["projection_residual_median"]
    assert max(residuals["realizable, no clamp"].values()) < 1e-10 < min(residuals["real, no clamp"].values())
    methods = _metrics(autoencoder, "05_inverse_methods")
    assert methods["best_realizable"]["float64"]["success_1e-6"] == 1.0
    for m in methods["methods"].values():
        assert m["real"] is None or (math.isfinite(m["real"]["mse"]) and m["real"]["nonfinite"] == 0)
    assert math.isfinite(methods["fast_vs_adam10"]["mse_ratio_to_adam10"])


def test_leaky_metrics_keep_the_sigmoid_sections_and_drop_the_tanh_ones(leaky):
    evaluation = _metrics(leaky, "02_evaluate")
    assert evaluation["nelbo_nats"] == pytest.approx(evaluation["bce_nats"] + evaluation["kl_nats"], rel=1e-5)
    inversion = _metrics(leaky, "03_invert")
    assert set(inversion["realizable"]) == {"prior", "encoder_mean"}
    assert set(inversion["saturation_points"]["float32"]) == {"sigmoid_to_1", "sigmoid_to_0"}
    assert set(inversion["saturated_share_prior"]) == {"5:Sigmoid"}
    assert set(inversion["real"]) == {"original_clamp", "no_clamp", "encoder"}
    failure = _metrics(leaky, "04_failure_analysis")
    assert "atanh_domain" not in failure and "atanh box only" not in failure["fixes"]
    assert {"clamp_sweep", "eps_best", "clamp_targets"} <= set(failure)
    methods = _metrics(leaky, "05_inverse_methods")
    assert "budget_vs_converged" in methods and "bce_ratio_to_adam10" in methods["fast_vs_adam10"]
