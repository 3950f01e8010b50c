"""The study's plan: every notebook has an entry, and a notebook's missing inputs stop it in one line."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from inverse_vae.core.config import load_config
from inverse_vae.errors import StudyError
from inverse_vae.runs import plan
from inverse_vae.runs.notebooks import study_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path):
    return SimpleNamespace(name="demo", root=tmp_path, dir=tmp_path / "reports" / "demo",
                           model_file=tmp_path / "reports" / "demo" / "checkpoints" / "model_9.pt",
                           config=load_config(ROOT / "params" / "smoke.yaml"))


def test_every_notebook_of_the_study_has_a_plan_entry():
    assert [nb.stem for nb in study_notebooks(ROOT)] == list(plan.PLAN)


def test_a_notebook_that_needs_the_model_is_stopped_naming_what_to_run(tmp_path):
    run = _run(tmp_path)
    plan.check_needs("01_train", run)  # trains the model: needs none
    with pytest.raises(StudyError) as info:
        plan.check_needs("03_invert", run)
    message = str(info.value)
    assert "\n" not in message and "reports/demo/checkpoints/model_9.pt" in message and "01_train" in message
    run.model_file.parent.mkdir(parents=True)
    run.model_file.write_bytes(b"")
    plan.check_needs("03_invert", run)


def test_the_description_names_inputs_and_outputs(tmp_path):
    text = plan.describe("05_inverse_methods", _run(tmp_path))
    assert "checkpoints/model_9.pt" in text and "cache/prior.npz" in text and "metrics/05_inverse_methods.json" in text
    with pytest.raises(StudyError, match="not in the study's plan"):
        plan.describe("06_nothing", _run(tmp_path))


def test_the_training_folders_shown_are_the_ones_the_params_name(tmp_path):
    text = (ROOT / "params" / "smoke.yaml").read_text()
    assert "progress_path: figures" in text and "model_path: checkpoints" in text
    params = tmp_path / "elsewhere.yaml"
    params.write_text(text.replace("progress_path: figures", "progress_path: progress")
                      .replace("model_path: checkpoints", "model_path: weights", 1))
    shown = plan.writes("01_train", load_config(params))
    assert "progress/<epoch>_epochs.png" in shown and "weights/model_<epoch>.pt" in shown
    assert not any(w.startswith(("train_progress/", "checkpoints/")) for w in shown)
