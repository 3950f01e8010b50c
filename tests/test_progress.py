"""progress.progress: a live bar for a person, one summary line for a headless (papermill) run."""
from __future__ import annotations

import io
import os

import pytest

from inverse_vae import progress as progress_module
from inverse_vae.progress import BATCH_ENV, headless, progress

_BEFORE = os.environ.get(BATCH_ENV)  # the runner restores it after each notebook


@pytest.fixture
def batch(monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "1")


def test_batch_prints_one_summary_line_and_yields_everything(batch, capsys):
    bar = progress(range(5), total=5, desc="epochs")
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(train=f"{i / 10:.2f}")
    bar.close()  # again: a no-op
    assert seen == [0, 1, 2, 3, 4]
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 1 and out.err == ""
    assert lines[0].startswith("epochs: 5/5 in ") and lines[0].endswith(" s (train=0.40)")


def test_resumed_loop_says_how_many_ran_now(batch, capsys):
    list(progress(range(8, 11), total=10, initial=7, desc="epochs"))
    assert capsys.readouterr().out.startswith("epochs: 10/10 (3 now) in ")


@pytest.mark.parametrize("value", ["1", "0"])
def test_disabled_prints_nothing(monkeypatch, capsys, value):
    monkeypatch.setenv(BATCH_ENV, value)
    assert list(progress(iter("abc"), enabled=False)) == ["a", "b", "c"]
    assert capsys.readouterr() == ("", "")


def test_interactive_is_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setenv(BATCH_ENV, "0")
    bar = progress(range(3), total=3, desc="steps")
    for _ in bar:
        bar.set_postfix(loss="1.0")
    out = capsys.readouterr()
    assert out.out == "" and "steps" in out.err and "3/3" in out.err and "loss=1.0" in out.err


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_the_runners_variable_decides(monkeypatch, value, expected):
    monkeypatch.setenv(BATCH_ENV, value)
    assert headless() is expected


def test_a_kernel_without_a_jupyter_server_is_headless(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    monkeypatch.setattr(progress_module, "_in_kernel", lambda: True)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert headless()  # papermill, nbclient, nbval
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/01_train.ipynb")
    assert not headless()  # JupyterLab


def test_a_pipe_is_headless(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    monkeypatch.setattr(progress_module, "_in_kernel", lambda: False)
    monkeypatch.setattr(progress_module.sys, "stderr", io.StringIO())
    assert headless()


@pytest.mark.slow
def test_the_runner_runs_kernels_headless_and_records_project_relative_paths(tmp_path):
    """A real papermill run of a tiny notebook in a project in tmp_path: the kernel sees BATCH_ENV=1
    (one summary line), and the executed notebook's metadata names paths inside the project relatively."""
    import json

    import nbformat

    from workflow.execute import execute

    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    (project / "notebooks").mkdir()
    (project / "pyproject.toml").write_text("")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                          "display_name": "Python 3"}})
    nb.cells.append(nbformat.v4.new_code_cell("params_file = reports_root = None", metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os\nfrom inverse_vae.progress import progress\n"
        "print(os.environ.get('INVERSE_VAE_BATCH'))\nfor _ in progress(range(3), total=3, desc='steps'):\n    pass"))
    notebook = project / "notebooks" / "00_tiny.ipynb"
    notebook.write_text(nbformat.writes(nb))
    output = project / "reports" / "p" / "00_tiny.ipynb"
    lines = []
    assert execute(notebook, str(project / "params" / "p.yaml"), "reports", project, say=lines.append) == output
    executed = json.loads(output.read_text())
    meta = executed["metadata"]["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("notebooks/00_tiny.ipynb", "reports/p/00_tiny.ipynb")
    assert meta["parameters"] == {"params_file": "params/p.yaml", "reports_root": "reports"}
    text = "".join("".join(o.get("text", "")) for o in executed["cells"][-1]["outputs"])
    assert text.startswith("1\nsteps: 3/3 in ") and text.count("\n") == 2
    assert len(lines) == 1 and lines[0].startswith("00_tiny [p] ") and lines[0].endswith(" s")
    assert os.environ.get(BATCH_ENV) is None or os.environ.get(BATCH_ENV) == _BEFORE
