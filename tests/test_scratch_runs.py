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
from inverse_vae.errors import StudyError
from inverse_vae.runs.notebooks import KERNEL, shown
from inverse_vae.runs.paths import SCRATCH_ROOT, open_run
from inverse_vae.runs.plan import check_needs

ROOT = Path(__file__).resolve().parents[1]


def test_reports_root_none_is_the_scratch_root_and_says_so(tmp_path):
    lines = []
    run = open_run("params/smoke.yaml", None, root=ROOT, log=lines.append)
    assert run.dir == ROOT / "reports" / "scratch" / "smoke" and run.scratch
    assert len(lines) == 1 and "reports/scratch/smoke/" in lines[0] and 'reports_root = "reports"' in lines[0]
    assert not open_run("params/smoke.yaml", "reports", root=ROOT, log=lines.append).scratch
    assert len(lines) == 1  # a named reports root says nothing


def test_a_scratch_run_without_a_model_says_what_to_do(tmp_path):
    project = _project(tmp_path, with_reports=False)
    run = open_run("params/smoke.yaml", None, root=project, log=lambda _: None)
    with pytest.raises(StudyError) as info:
        check_needs("02_evaluate", run)
    message = str(info.value)
    with pytest.raises(StudyError) as opened:  # what a notebook's first cell does
        open_run("params/smoke.yaml", None, root=project, log=lambda _: None, notebook="02_evaluate")
    assert str(opened.value) == message
    assert "\n" not in message and "reports/scratch/smoke/checkpoints/model_4.pt" in message
    assert "run notebooks/01_train.ipynb first with reports_root = None" in message
    assert 'set reports_root = "reports"' in message


def test_the_scratch_root_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (SCRATCH_ROOT / "default" / "metrics" / "01_train.json", Path("reports/.old/default-20261128-120000/x")):
        assert subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT).returncode == 0, path


def test_paths_in_logs_and_reports_are_project_relative(tmp_path):
    assert data._shown(ROOT / "data" / "MNIST" / "raw") == "data/MNIST/raw"
    assert data._shown(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    assert shown(ROOT / "reports" / "default" / "01_train.ipynb", ROOT) == "reports/default/01_train.ipynb"
    assert shown(tmp_path / "x.ipynb", ROOT) == str(tmp_path / "x.ipynb")


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


def test_a_notebook_run_with_its_defaults_leaves_the_committed_reports_unchanged(tmp_path):
    """Notebook 01 as JupyterLab runs it (from notebooks/, its parameters cell unchanged but for the
    smoke params), through papermill without the runner."""
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
                        parameters={"params_file": "params/smoke.yaml"}, cwd=str(project / "notebooks"),
                        progress_bar=False)
    after = _hashes(project / "reports")
    written = {k: v for k, v in after.items() if k not in before}
    assert {k: after.get(k) for k in before} == before  # every tracked file, byte for byte
    assert written and all(k.startswith("scratch/smoke/") for k in written), sorted(written)
    assert "scratch/smoke/metrics/01_train.json" in written
    text = "".join(o.get("text", "") for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "scratch run: writing into reports/scratch/smoke/" in text
    assert "epochs: 4/4 in " in text and "\r" not in text  # one progress line, not a bar's refreshes
    assert str(project) not in text and str(ROOT) not in text  # no machine's path
    assert json.loads((project / "reports" / "scratch" / "smoke" / "metrics" / "01_train.json").read_text())["epochs"] == 4
