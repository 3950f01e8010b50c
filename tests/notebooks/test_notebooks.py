"""The notebooks: committed clean, goldens in sync, and a real papermill run of the smoke params."""
import json
from pathlib import Path

import nbformat
import pytest
from conftest import execute_notebooks

from inverse_vae.constants import NOTEBOOKS as NAMES
from inverse_vae.constants import SUMMARY
from workflow.execute import NotebookFailed, execute

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [ROOT / "notebooks" / f"{name}.ipynb" for name in (*NAMES, SUMMARY)]


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
    if path.stem == SUMMARY:
        pytest.skip("the summary reads every run: no smoke golden")
    assert golden.is_file(), f"no golden for {path.name}: run `.venv/bin/python tools/make_goldens.py`"
    assert _code(golden) == _code(path), f"{golden} is stale: run `.venv/bin/python tools/make_goldens.py`"


def _committed_runs() -> list[Path]:
    return sorted(p for p in (ROOT / "reports").glob("*/[0-9][0-9]_*.ipynb") if p.parent.name != "scratch")


@pytest.mark.parametrize("executed", _committed_runs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_committed_report_was_executed_from_the_notebook_as_it_is(executed):
    """What lets a fresh clone count the committed reports as up to date: each executed copy's code is the
    notebook's (the workflow re-runs a notebook when its code cells change), and it raised nothing."""
    notebook = ROOT / "notebooks" / executed.name
    assert _code(executed) == _code(notebook), f"{executed.relative_to(ROOT)} is stale: ./run_all.sh re-runs it"
    nb = nbformat.read(executed, as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.slow
def test_smoke_params_run_through_papermill(tmp_path):
    run = execute_notebooks("params/smoke.yaml", tmp_path, ["01_train", "02_evaluate"])
    for nb_path in (run / "01_train.ipynb", run / "02_evaluate.ipynb"):
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


@pytest.mark.slow
def test_a_notebook_whose_model_is_missing_says_which_notebook_makes_it(tmp_path, default_raw, write_params):
    raw = dict(default_raw)
    raw["test"] = dict(raw["test"], model_path="checkpoints/model_999.pt")
    params = write_params(raw, "missing_ckpt")
    with pytest.raises(NotebookFailed) as info:
        execute("notebooks/02_evaluate.ipynb", params, tmp_path, ROOT, say=lambda line: None)
    assert "\n" not in str(info.value) and "CheckpointError" in str(info.value) and "01_train" in str(info.value)
    assert not (tmp_path / "missing_ckpt" / "metrics").exists()  # no metrics: the workflow re-runs it
    kept = nbformat.read(tmp_path / "missing_ckpt" / "02_evaluate.ipynb", as_version=4)
    assert any(o.output_type == "error" for c in kept.cells if c.cell_type == "code" for o in c.outputs)
