"""JupyterLab's save hook (runs/jupyter.py): a project notebook is saved exactly as the git filter commits
it (outputs, counts and language_info gone); any other notebook is saved as it is."""
import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat

from inverse_vae.runs import jupyter

ROOT = Path(__file__).resolve().parents[2]


def _executed(path: Path) -> dict:
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="an output\n")]
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    return {"type": "notebook", "content": notebook}


def test_a_project_notebook_is_saved_as_the_git_filter_commits_it():
    model = _executed(ROOT / "notebooks" / "03_invert.ipynb")
    filtered = subprocess.run([sys.executable, "-m", "nbstripout", "--extra-keys", "metadata.language_info"],
                              input=nbformat.writes(model["content"]), capture_output=True, text=True, check=True).stdout
    jupyter.strip_before_save(model, "notebooks/03_invert.ipynb", SimpleNamespace(root_dir=str(ROOT)))
    assert nbformat.writes(model["content"]) + "\n" == filtered
    assert filtered == (ROOT / "notebooks" / "03_invert.ipynb").read_text()  # the committed file, byte for byte


def test_other_notebooks_and_files_are_saved_as_they_are(tmp_path):
    model = _executed(ROOT / "notebooks" / "03_invert.ipynb")
    before = copy.deepcopy(model)
    jupyter.strip_before_save(model, "reports/scratch/notebooks/03_invert_smoke.ipynb", SimpleNamespace(root_dir=str(ROOT)))
    (tmp_path / "notebooks").mkdir()  # a notebooks/ folder that is no project's
    jupyter.strip_before_save(model, "notebooks/03_invert.ipynb", SimpleNamespace(root_dir=str(tmp_path)))
    text = {"type": "file", "content": "x"}
    jupyter.strip_before_save(text, "notebooks/notes.txt", SimpleNamespace(root_dir=str(ROOT)))
    assert model == before and text == {"type": "file", "content": "x"}


def test_the_set_up_installs_the_hook_where_jupyter_server_reads_it():
    from jupyter_server.serverapp import ServerApp

    app = ServerApp()
    app.initialize(argv=[f"--ServerApp.root_dir={ROOT}"], find_extensions=False, new_httpserver=False,
                   starter_extension=None)
    assert app.contents_manager.pre_save_hook is jupyter.strip_before_save, \
        "run tools/ensure_env.sh (it runs inverse-vae jupyter-setup)"
