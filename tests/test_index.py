"""`python -m inverse_vae index`: a broken run is left out with a warning and the others are still
rendered; a missing reports folder is one line; a nan headline is shown as nan."""
import json

import nbformat
import pytest

from inverse_vae.__main__ import main
from inverse_vae.runs.report_index import write_index


def _run(reports, name, *, notebook=True, metrics=None):
    run = reports / name
    (run / "metrics").mkdir(parents=True)
    if notebook:
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {name}"))
        (run / "01_train.ipynb").write_text(nbformat.writes(nb))
    for file, values in (metrics or {}).items():
        (run / "metrics" / file).write_text(values if isinstance(values, str) else json.dumps(values))
    return run


@pytest.fixture
def reports(tmp_path):
    reports = tmp_path / "reports"
    _run(reports, "good", metrics={"01_train.json": {"final_val_loss": 0.1686, "device": "cpu"}})
    _run(reports, "diverged", metrics={"01_train.json": {"final_val_loss": "nan", "seconds": "inf"},
                                       "02_evaluate.json": {"probe_accuracy": float("nan")}})
    truncated = _run(reports, "truncated")
    text = (truncated / "01_train.ipynb").read_text()
    (truncated / "01_train.ipynb").write_text(text[: len(text) // 2])  # a full disk, before atomic writes
    _run(reports, "bad_metrics", metrics={"01_train.json": '{"final_val_loss": 0.1'})
    return reports


def test_index_leaves_out_broken_runs_with_a_warning_and_renders_the_others(reports):
    warnings = []
    index = write_index(reports, warn=warnings.append).read_text()
    assert "<h2>good</h2>" in index and "validation loss (original convention): 0.1686" in index
    assert "<h2>diverged</h2>" in index and "validation loss (original convention): nan" in index
    assert "training seconds: inf" in index and "linear probe accuracy: nan" in index
    assert "truncated" not in index and "bad_metrics" not in index
    assert sorted(warnings) == [
        "warning: bad_metrics left out of the index: metrics/01_train.json is not readable JSON (JSONDecodeError)",
        "warning: truncated left out of the index: 01_train.ipynb is not a readable notebook (NotJSONError)",
    ]


def test_index_command_warns_on_stderr_and_succeeds(reports, capsys):
    assert main(["index", "--reports-root", str(reports)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    assert (reports / "good" / "01_train.html").is_file()


def test_index_of_a_missing_reports_folder_is_one_line(tmp_path, capsys):
    assert main(["index", "--reports-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: reports folder ") and "nowhere" in err[0]


def test_a_page_that_cannot_be_written_leaves_that_run_out(reports, monkeypatch):
    from inverse_vae.core.files import WriteError
    from inverse_vae.runs import report_index

    real = report_index.atomic_write

    def refuse_pages_of_good(path, content, verify=None):
        if path.parent.name == "good":
            raise WriteError(f"cannot write {path}: the disk is full")
        return real(path, content, verify)

    monkeypatch.setattr(report_index, "atomic_write", refuse_pages_of_good)
    warnings = []
    index = write_index(reports, warn=warnings.append).read_text()
    assert "<h2>diverged</h2>" in index and "<h2>good</h2>" not in index
    assert any(w.startswith("warning: good left out of the index: cannot write") for w in warnings)
