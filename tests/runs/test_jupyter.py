"""JupyterLab's save hook (workflow/jupyter_setup.py): a project notebook is saved exactly as the git filter commits
it (outputs, counts and language_info gone); any other notebook is saved as it is."""
import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from workflow import jupyter_setup

ROOT = Path(__file__).resolve().parents[2]


def _executed(path: Path) -> dict:
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="an output\n")]
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    return {"type": "notebook", "content": notebook}


def test_a_project_notebook_is_saved_as_the_git_filter_commits_it(monkeypatch):
    monkeypatch.setattr(jupyter_setup, "keep_outputs", lambda *args: None)  # a researcher's scratch copy is not the test's
    model = _executed(ROOT / "notebooks" / "03_invert.ipynb")
    filtered = subprocess.run([sys.executable, "-m", "nbstripout", "--extra-keys", "metadata.language_info"],
                              input=nbformat.writes(model["content"]), capture_output=True, text=True, check=True).stdout
    jupyter_setup.strip_before_save(model, "notebooks/03_invert.ipynb", SimpleNamespace(root_dir=str(ROOT)))
    assert nbformat.writes(model["content"]) + "\n" == filtered
    assert filtered == (ROOT / "notebooks" / "03_invert.ipynb").read_text()  # the committed file, byte for byte


def test_a_save_keeps_the_outputs_in_the_scratch_run_and_an_empty_save_overwrites_nothing(tmp_path):
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "params").mkdir()
    (project / "pyproject.toml").write_text("")
    manager = SimpleNamespace(root_dir=str(project))
    for name, run in (("03_invert.ipynb", "latent16"), ("99_summary.ipynb", "summary")):
        model = _executed(ROOT / "notebooks" / name)
        parameters = next(c for c in model["content"].cells if "parameters" in c.metadata.get("tags", []))
        parameters.source = parameters.source.replace("params/default.yaml", "params/latent16.yaml")
        jupyter_setup.strip_before_save(model, f"notebooks/{name}", manager)
        kept = project / "reports" / "scratch" / run / name
        assert "an output" in kept.read_text() and "an output" not in nbformat.writes(model["content"])
        reopened = {"type": "notebook", "content": nbformat.read(ROOT / "notebooks" / name, as_version=4)}
        jupyter_setup.strip_before_save(reopened, f"notebooks/{name}", manager)  # opened again and saved: no outputs
        assert "an output" in kept.read_text()


def test_other_notebooks_and_files_are_saved_as_they_are(tmp_path):
    model = _executed(ROOT / "notebooks" / "03_invert.ipynb")
    before = copy.deepcopy(model)
    jupyter_setup.strip_before_save(model, "reports/scratch/notebooks/03_invert_smoke.ipynb", SimpleNamespace(root_dir=str(ROOT)))
    (tmp_path / "notebooks").mkdir()  # a notebooks/ folder that is no project's
    jupyter_setup.strip_before_save(model, "notebooks/03_invert.ipynb", SimpleNamespace(root_dir=str(tmp_path)))
    text = {"type": "file", "content": "x"}
    jupyter_setup.strip_before_save(text, "notebooks/notes.txt", SimpleNamespace(root_dir=str(ROOT)))
    assert model == before and text == {"type": "file", "content": "x"}


def test_the_set_up_installs_the_hook_where_jupyter_server_reads_it():
    from jupyter_server.serverapp import ServerApp

    app = ServerApp()
    app.initialize(argv=[f"--ServerApp.root_dir={ROOT}"], find_extensions=False, new_httpserver=False,
                   starter_extension=None)
    assert app.contents_manager.pre_save_hook is jupyter_setup.strip_before_save, \
        "run tools/ensure_env.sh (it runs inverse-vae jupyter-setup)"


def test_set_up_without_ipykernel_ends_in_one_line(monkeypatch, tmp_path, capsys):
    from workflow.__main__ import main

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ipykernel.kernelspec", None)  # what an environment without ipykernel gives
    assert main(["jupyter-setup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ipykernel is not installed" in err and "Traceback" not in err
    assert not (tmp_path / "etc").exists()  # nothing written


def test_set_up_keeps_other_settings_and_refuses_a_broken_config(monkeypatch, tmp_path, capsys):
    from workflow.__main__ import main

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"ServerApp": {"port": 9999}}')
    assert main(["jupyter-setup"]) == 0
    settings = json.loads(config.read_text())
    assert settings["ServerApp"] == {"port": 9999}
    assert settings["ContentsManager"]["pre_save_hook"] == "workflow.jupyter_setup.strip_before_save"
    assert (tmp_path / "share" / "jupyter" / "kernels" / "inverse-vae" / "kernel.json").is_file()
    config.write_text('{"ServerApp": ')  # a half-edited file: named, left as it is
    assert main(["jupyter-setup"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "jupyter_server_config.json: not valid JSON" in err
    assert config.read_text() == '{"ServerApp": '


@pytest.mark.parametrize("content, named", [('{"ContentsManager": null}', 'its "ContentsManager" is null'),
                                            ("[]", "it holds []"), ('"text"', 'it holds "text"')])
def test_set_up_refuses_a_config_that_is_json_but_no_object_before_installing_anything(monkeypatch, tmp_path, capsys,
                                                                                       content, named):
    from workflow.__main__ import main

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(content)
    assert main(["jupyter-setup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {config}: {named}, not a JSON object") and "Traceback" not in err
    assert config.read_text() == content and not (tmp_path / "share").exists()  # no kernel installed either
