"""A notebook run outside the runner with its default parameters writes the git-ignored scratch root
reports/scratch/<run>/, never the committed reports; reports name no machine's checkout path."""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from inverse_vae.core import data
from inverse_vae.errors import CheckpointError
from inverse_vae.runs.run import SCRATCH_ROOT, open_run
from inverse_vae.study.shared import trained_model
from workflow.execute import KERNEL

ROOT = Path(__file__).resolve().parents[2]


def test_reports_root_none_is_the_scratch_root_and_says_so(tmp_path):
    lines = []
    run = open_run("params/smoke.yaml", None, root=ROOT, say=lines.append)
    assert run.dir == ROOT / "reports" / "scratch" / "smoke" and run.scratch
    assert len(lines) == 1 and "reports/scratch/smoke/" in lines[0] and 'reports_root = "reports"' in lines[0]
    assert not open_run("params/smoke.yaml", "reports", root=ROOT, say=lines.append).scratch
    assert len(lines) == 1  # a named reports root says nothing


def test_a_scratch_run_without_a_model_says_what_to_do(tmp_path):
    project = _project(tmp_path, with_reports=False)
    run = open_run("params/smoke.yaml", None, root=project, say=lambda _: None)  # no committed smoke model
    with pytest.raises(CheckpointError) as info:  # what a notebook's first cell does
        trained_model(run)
    message = str(info.value)
    assert "\n" not in message and "scratch/smoke/checkpoints/model_4.pt" in message and "01_train" in message


def test_the_scratch_root_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (SCRATCH_ROOT / "default" / "metrics" / "01_train.json", Path("reports/.old/default-20261128-120000/x")):
        assert subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT).returncode == 0, path


def test_paths_in_logs_and_reports_are_project_relative(tmp_path):
    assert data._shown(ROOT / "data" / "MNIST" / "raw") == "data/MNIST/raw"
    assert data._shown(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    run = open_run("params/smoke.yaml", "reports", root=ROOT, say=lambda _: None)
    assert run.shown(ROOT / "reports" / "default" / "01_train.ipynb") == "reports/default/01_train.ipynb"
    assert run.shown(tmp_path / "x.ipynb") == str(tmp_path / "x.ipynb")


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _project(tmp_path: Path, with_reports: bool = True) -> Path:
    """A copy of the project as a reader has it: the notebooks, params, and every tracked file under
    reports/ (a copy, so that a run elsewhere in the checkout cannot disturb the comparison); MNIST linked."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(ROOT / "params", project / "params")
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    (project / "data").symlink_to(ROOT / "data")
    if with_reports:
        tracked = subprocess.run(["git", "ls-files", "-z", "reports"], cwd=ROOT, capture_output=True, check=True)
        for name in filter(None, tracked.stdout.decode().split("\0")):
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    return project


@pytest.mark.slow
def test_a_notebook_run_with_its_defaults_starts_from_the_committed_model_and_changes_nothing_tracked(tmp_path):
    """Notebook 01 as JupyterLab runs it (from notebooks/, its parameters cell unchanged), through papermill
    without the workflow: the scratch run starts from the committed default model, trains nothing."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the tracked reports")
    if not (ROOT / "data" / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not fetched (./run_tests.sh fetches it)")
    import papermill as pm
    from jupyter_client.kernelspec import KernelSpecManager

    project = _project(tmp_path)
    before = _hashes(project / "reports")
    assert before, "no tracked reports copied"
    kernel = KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"
    executed = tmp_path / "01_train.ipynb"
    pm.execute_notebook(str(project / "notebooks" / "01_train.ipynb"), str(executed), kernel_name=kernel,
                        cwd=str(project / "notebooks"),
                        progress_bar=False)
    after = _hashes(project / "reports")
    written = {k: v for k, v in after.items() if k not in before}
    assert {k: after.get(k) for k in before} == before  # every tracked file, byte for byte
    assert written and all(k.startswith("scratch/default/") for k in written), sorted(written)
    assert "scratch/default/metrics/01_train.json" in written
    text = "".join(o.get("text", "") for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "scratch run: writing into reports/scratch/default/" in text and "starts from the committed model" in text
    assert "\r" not in text  # no bar's refreshes
    assert str(project) not in text and str(ROOT) not in text  # no machine's path
    trained = json.loads((project / "reports" / "scratch" / "default" / "metrics" / "01_train.json").read_text())
    committed = json.loads((project / "reports" / "default" / "metrics" / "01_train.json").read_text())
    assert trained["epochs"] == 90 and trained["final_val_loss"] == committed["final_val_loss"]  # nothing retrained
