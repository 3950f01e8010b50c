"""Executing one notebook (what every workflow rule runs): whole or not at all, errors in one line."""
import errno
import json
from pathlib import Path

import nbformat
import papermill
import pytest
from nbclient.exceptions import DeadKernelError

from inverse_vae.core import files
from workflow import execute
from workflow.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _fake_notebook() -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    return nbformat.writes(nb)


@pytest.fixture
def previous(tmp_path, monkeypatch):
    """reports/smoke/01_train.ipynb as an earlier run left it, and the command that re-executes it."""
    monkeypatch.setattr(execute, "_kernel_name", lambda: "python3")
    monkeypatch.chdir(ROOT)
    output = tmp_path / "reports" / "smoke" / "01_train.ipynb"
    output.parent.mkdir(parents=True)
    output.write_text("previous executed notebook")
    return output, ["execute", "notebooks/01_train.ipynb", "params/smoke.yaml", "--reports-root", str(tmp_path / "reports")]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (DeadKernelError("Kernel died"), "the kernel died"),
])
def test_a_failed_execution_keeps_the_previous_copy_and_says_why_in_one_line(previous, monkeypatch, capsys, error, expected):
    output, argv = previous

    def half_then_fail(notebook, out, **kwargs):
        Path(out).write_text(_fake_notebook()[:40])  # half a notebook, as papermill leaves it
        raise error

    monkeypatch.setattr(papermill, "execute_notebook", half_then_fail)
    assert main(argv) == 2
    lines = _errors(capsys)
    assert len(lines) == 1 and expected in lines[0] and "01_train.ipynb" in lines[0]
    assert output.read_text() == "previous executed notebook"
    assert [p.name for p in output.parent.iterdir()] == ["01_train.ipynb"]  # no temporary left


def test_a_read_only_run_folder_is_one_line(previous, monkeypatch, capsys):
    output, argv = previous
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("must not execute"))
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(PermissionError(errno.EACCES, "no")))
    assert main(argv) == 2
    assert len(lines := _errors(capsys)) == 1 and "permission denied" in lines[0]


def test_a_notebook_that_raised_is_published_with_its_error(previous, monkeypatch, capsys):
    output, argv = previous

    def raises(notebook, out, **kwargs):
        Path(out).write_text(_fake_notebook())
        raise papermill.PapermillExecutionError(3, 3, "boom", "ValueError", "boom", [])

    monkeypatch.setattr(papermill, "execute_notebook", raises)
    assert main(argv) == 2
    assert "01_train.ipynb failed in cell 3: ValueError: boom" in _errors(capsys)[0]
    assert nbformat.reads(output.read_text(), as_version=4).cells[0].source == "print(1)"


def test_a_real_papermill_run_publishes_with_its_final_name_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "_kernel_name", lambda: "python3")
    notebook = ROOT / "notebooks" / "00_tiny_test.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "P"}})
    nb.cells.append(nbformat.v4.new_code_cell("params_file = reports_root = None", metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell("print(params_file)"))
    notebook.write_text(nbformat.writes(nb))
    try:
        output = execute.execute(notebook, "params/smoke.yaml", tmp_path, ROOT, say=lambda line: None)
    finally:
        notebook.unlink()
    executed = json.loads(output.read_text())
    assert output == tmp_path / "smoke" / "00_tiny_test.ipynb"
    assert executed["metadata"]["papermill"]["input_path"] == "notebooks/00_tiny_test.ipynb"
    assert executed["cells"][-1]["outputs"][0]["text"] == ["params/smoke.yaml\n"]
    assert [p.name for p in output.parent.iterdir()] == ["00_tiny_test.ipynb"]
