"""A run stays in its folder and fails in one line: params paths and run names that would leave
reports/<run>/ are refused, executed notebooks land whole or not at all (full disk, read-only folder,
dead kernel), killed writers' temporary files are cleaned, and one run folder has one runner."""
import copy
import dataclasses
import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import papermill
import pytest
from nbclient.exceptions import DeadKernelError

from inverse_vae.__main__ import main
from inverse_vae.core import files
from inverse_vae.errors import ParamsError, StudyError
from inverse_vae.runs import notebooks
from inverse_vae.runs.paths import open_run, run_lock

ROOT = Path(__file__).resolve().parents[1]
OLD = time.time() - 3600  # an mtime well before any run's start


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


# --- paths and run names -------------------------------------------------------------------------


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "model_path", "/tmp/elsewhere", "train.model_path: must be a path relative to the run folder"),
    ("train", "progress_path", "../../figures", "train.progress_path: must stay inside the run folder"),
    ("test", "model_path", "checkpoints/../../x.pt", "test.model_path: must stay inside"),
    ("test", "results_path", "..", "test.results_path: must stay inside"),
    ("test", "results_path", "~/results", "test.results_path: must be a path relative"),
])
def test_check_params_refuses_a_path_leaving_the_run_folder(default_raw, write_params, capsys,
                                                            section, key, value, expected):
    raw = copy.deepcopy(default_raw)
    raw[section][key] = value
    params = write_params(raw, "escaping")
    assert main(["check-params", str(params)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: {expected}")


@pytest.mark.parametrize("stem", ["..", ".hidden", "two words", "semi;colon"])
def test_check_params_refuses_a_run_name_that_is_not_a_plain_name(default_raw, tmp_path, capsys, stem):
    params = tmp_path / f"{stem}.yaml"  # "...yaml" has the stem "..": the run folder would be reports/..
    params.write_text((ROOT / "params" / "default.yaml").read_text())
    assert main(["check-params", str(params)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and f"run name {stem!r}" in lines[0] and lines[0].startswith(f"error: {params}: ")


def test_plain_relative_paths_and_names_are_accepted(default_raw, write_params, capsys):
    raw = copy.deepcopy(default_raw)
    raw["test"]["model_path"] = "./pretrained/../checkpoints/model_90.pt"  # climbs, but stays inside
    assert main(["check-params", str(write_params(raw, "v1.2_run-b"))]) == 0


def test_a_run_whose_config_changed_afterwards_still_cannot_leave(tmp_path):
    run = open_run(ROOT / "params" / "smoke.yaml", reports_root=tmp_path, root=ROOT)
    moved = dataclasses.replace(run, config=run.config.replace(test={"model_path": "/etc/model.pt"}))
    with pytest.raises(ParamsError, match="test.model_path: must be a path relative"):
        moved.model_file  # noqa: B018 (the property is the code under test)
    assert run.model_file == tmp_path / "smoke" / "checkpoints" / "model_4.pt"


# --- executed notebooks: whole or not at all -----------------------------------------------------


def _fake_notebook() -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print(1)"))
    return nbformat.writes(nb)


def _runner_setup(tmp_path, monkeypatch, fake_execute):
    """A smoke run into tmp_path/reports, notebook 01 only, with papermill replaced by fake_execute."""
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(notebooks, "_kernel_name", lambda: "python3")
    output = tmp_path / "reports" / "smoke" / "01_train.ipynb"
    output.parent.mkdir(parents=True)
    output.write_text("previous executed notebook")
    return output, ["run-notebooks", str(ROOT / "params" / "smoke.yaml"), "--only", "01",
                    "--reports-root", str(tmp_path / "reports")]


def _partial_then(error):
    def execute(notebook, output, **kwargs):
        Path(output).write_text(_fake_notebook()[:40])  # half a notebook, as papermill leaves it
        raise error
    return execute


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "01_train.ipynb: the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "01_train.ipynb: permission denied"),
    (DeadKernelError("Kernel died"), "01_train.ipynb: the kernel died while running it"),
])
def test_a_failed_notebook_write_keeps_the_previous_one_and_says_why_in_one_line(tmp_path, monkeypatch, capsys,
                                                                                 error, expected):
    output, argv = _runner_setup(tmp_path, monkeypatch, _partial_then(error))
    assert main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and expected in lines[0] and str(output) in lines[0]
    assert output.read_text() == "previous executed notebook"
    assert sorted(p.name for p in output.parent.iterdir()) == [".lock", "01_train.ipynb"]  # no temporary left


def test_a_read_only_run_folder_is_one_line(tmp_path, monkeypatch, capsys):
    # Root ignores chmod: refuse where the executed notebook's temporary file is created.
    output, argv = _runner_setup(tmp_path, monkeypatch, lambda *a, **k: pytest.fail("must not execute"))

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    assert main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and f"cannot write {output}: permission denied" in lines[0]


def test_a_notebook_that_raised_is_published_with_its_error(tmp_path, monkeypatch, capsys):
    def execute(notebook, output, **kwargs):
        Path(output).write_text(_fake_notebook())
        raise papermill.PapermillExecutionError(3, 3, "boom", "ValueError", "boom", [])

    output, argv = _runner_setup(tmp_path, monkeypatch, execute)
    assert main(argv) == 2
    assert "01_train.ipynb failed in cell 3: ValueError: boom" in _error_lines(capsys)[0]
    assert nbformat.reads(output.read_text(), as_version=4).cells[0].source == "print(1)"


def test_a_real_papermill_run_publishes_with_its_final_name(tmp_path):
    notebook = tmp_path / "00_tiny.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                          "display_name": "Python 3"}})
    nb.cells.append(nbformat.v4.new_code_cell("params_file = reports_root = None", metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell("print(params_file)"))
    notebook.write_text(nbformat.writes(nb))
    output = tmp_path / "run" / "00_tiny.ipynb"
    notebooks.execute(notebook, "p.yaml", output, "reports", ROOT, log=lambda s: None)
    executed = json.loads(output.read_text())
    assert executed["metadata"]["papermill"]["output_path"] == str(output)
    assert executed["cells"][-1]["outputs"][0]["text"] == ["p.yaml\n"]
    assert [p.name for p in output.parent.iterdir()] == ["00_tiny.ipynb"]


# --- temporary files of killed writers -----------------------------------------------------------


def _stale_and_fresh(run_dir: Path) -> tuple[Path, Path]:
    (run_dir / "checkpoints").mkdir(parents=True)
    stale, fresh = run_dir / "checkpoints" / ".model_2.pt.abcd1234.tmp", run_dir / ".01_train.ipynb.wxyz6789.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    os.utime(stale, (OLD, OLD))
    return stale, fresh


def test_opening_a_run_cleans_what_a_killed_write_left(tmp_path):
    stale, fresh = _stale_and_fresh(tmp_path / "smoke")
    open_run(ROOT / "params" / "smoke.yaml", reports_root=tmp_path, root=ROOT)
    assert not stale.exists() and fresh.exists()


def test_the_runner_cleans_when_it_takes_the_lock(tmp_path):
    stale, fresh = _stale_and_fresh(tmp_path / "run")
    with run_lock(tmp_path / "run"):
        assert not stale.exists() and fresh.exists()


# --- one runner per run folder -------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from inverse_vae.runs.paths import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def held_elsewhere(tmp_path):
    """reports/smoke/ locked by another process (a runner in the middle of its run)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "reports" / "smoke")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    yield tmp_path / "reports" / "smoke"
    proc.kill()
    proc.wait()


def test_a_second_runner_of_the_same_run_exits_2_in_one_line(tmp_path, held_elsewhere):
    done = subprocess.run([sys.executable, "-m", "inverse_vae", "run-notebooks", "params/smoke.yaml",
                           "--only", "01", "--reports-root", str(tmp_path / "reports")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another run of 'smoke' is writing into this folder" in lines[0]
    assert not (held_elsewhere / "01_train.ipynb").exists()


def test_the_runners_own_notebooks_never_wait_for_its_lock(tmp_path, held_elsewhere):
    # A notebook kernel opens the run while its runner holds the lock: it goes on, touching nothing.
    stale, _ = _stale_and_fresh(held_elsewhere)
    started = time.time()
    open_run(ROOT / "params" / "smoke.yaml", reports_root=tmp_path / "reports", root=ROOT)
    assert time.time() - started < 5 and stale.exists()


def test_the_lock_is_reentrant_within_a_process_and_released_after(tmp_path):
    with run_lock(tmp_path / "run"), run_lock(tmp_path / "run"):
        pass
    with run_lock(tmp_path / "run"):  # released: taken again at once
        pass


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StudyError, match=r"cannot write .*\.lock: the file system is read-only"):
        with run_lock(tmp_path / "run"):
            pass
