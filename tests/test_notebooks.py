"""The notebooks: committed clean, goldens in sync, and a real papermill run of the smoke params."""
import json
from pathlib import Path

import nbformat
import pytest

from inverse_vae.core.config import load_config
from inverse_vae.errors import StudyError
from inverse_vae.runs import plan
from inverse_vae.runs.notebooks import NotebookFailed, run_study, study_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = study_notebooks(ROOT)


def _code(nb_path: Path) -> list[str]:
    nb = nbformat.read(nb_path, as_version=4)
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs_and_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nb.metadata.kernelspec.name == "inverse-vae"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_golden_matches_the_notebook(path):
    golden = ROOT / "tests" / "goldens" / path.name
    assert golden.is_file(), f"no golden for {path.name}: run `python -m inverse_vae make-goldens`"
    assert _code(golden) == _code(path), f"{golden} is stale: run `python -m inverse_vae make-goldens`"


def test_smoke_params_run_through_papermill(tmp_path):
    outputs = run_study(["params/smoke.yaml"], only=["01", "02"], reports_root=str(tmp_path), root=ROOT)
    run = tmp_path / "smoke"
    assert [p.name for p in outputs] == ["01_train.ipynb", "02_evaluate.ipynb"]
    for nb_path in outputs:
        nb = nbformat.read(nb_path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
    train = json.loads((run / "metrics" / "01_train.json").read_text())
    assert train["epochs"] == 4 and 0 < train["final_val_loss"] < 0.7 and train["seconds"] > 0
    evaluation = json.loads((run / "metrics" / "02_evaluate.json").read_text())
    assert evaluation["nelbo_nats"] == pytest.approx(evaluation["bce_nats"] + evaluation["kl_nats"], rel=1e-5)
    assert 0.1 < evaluation["probe_accuracy"] <= 1.0  # far above chance even after 4 tiny epochs
    assert set(evaluation["reconstruction"]) >= {"bce", "mse", "psnr", "ssim"}
    for figure in ("loss.png", "reconstruction.png", "random_generation.png", "latent_tsne_pca.png"):
        assert (run / "figures" / figure).stat().st_size > 1000
    # What the plan says 01 and 02 write is what they wrote.
    config = load_config("params/smoke.yaml")
    declared = {w for nb in ("01_train", "02_evaluate") for w in plan.writes(nb, config) if "<" not in w}
    written = {str(p.relative_to(run)) for folder in ("figures", "metrics") for p in (run / folder).iterdir()
               if not p.name.endswith("_epochs.png")}  # the progress figures: smoke's progress_path is figures/
    assert written == declared
    assert (run / "cache" / "probe.npz").is_file()  # 02 fitted the run's probe once, for 03-05
    assert (run / "checkpoints" / "model_4.pt").is_file()


def test_a_notebook_whose_model_is_missing_is_not_started(tmp_path, default_raw, write_params):
    raw = dict(default_raw)
    raw["test"] = dict(raw["test"], model_path="checkpoints/model_999.pt")
    params = write_params(raw, "missing_ckpt")
    with pytest.raises(StudyError) as info:
        run_study([str(params)], only=["02"], reports_root=str(tmp_path), root=ROOT)
    message = str(info.value)
    assert "\n" not in message and "02_evaluate needs the trained model" in message and "01_train" in message
    run_dir = tmp_path / "missing_ckpt"  # at most the runner's lock: no notebook, metrics or figure
    assert not [p for p in run_dir.rglob("*") if p.name != ".lock"]


def test_a_failing_notebook_is_kept_with_its_error_and_named(tmp_path, default_raw, write_params):
    raw = dict(default_raw)
    raw["test"] = dict(raw["test"], model_path="checkpoints/model_999.pt")
    params = write_params(raw, "bad_ckpt")
    damaged = tmp_path / "bad_ckpt" / "checkpoints" / "model_999.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(NotebookFailed) as info:
        run_study([str(params)], only=["02"], reports_root=str(tmp_path), root=ROOT)
    message = str(info.value)
    assert "02_evaluate.ipynb failed" in message and "CheckpointError" in message
    kept = nbformat.read(tmp_path / "bad_ckpt" / "02_evaluate.ipynb", as_version=4)
    assert any(o.output_type == "error" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
