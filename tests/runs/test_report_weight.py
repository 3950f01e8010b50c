"""Each figure stored once (linked from the executed notebook and its page), compact PNGs, one shared
stylesheet, and the committed reports within the issue's weight budget."""
import io
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from inverse_vae.study import figures  # noqa: E402
from workflow.pages import SAVED_FIGURE, _shared_styles, link_saved_figures, render_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PNG = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        nb.cells.append(cell)
    return nb


def _figure_files(folder: Path, *names):
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / "figures" / name).write_bytes(b"png")


def test_a_saved_figure_is_linked_instead_of_embedded(tmp_path):
    _figure_files(tmp_path, "loss.png")
    nb = _notebook(('fig = figures.loss_curves(h, run.figure("loss.png"))', [PNG]))
    assert link_saved_figures(nb, tmp_path) == 1
    data = nb.cells[0].outputs[0].data
    assert "image/png" not in data
    assert data["text/markdown"] == "![loss](figures/loss.png)"


@pytest.mark.parametrize("source, outputs, files", [
    ('fig = f(run.figure("a.png"))', [PNG], []),                            # the file is missing
    ('fig = f(run.figure(f"a_{name}.png"))', [PNG], ["a_x.png", "a_y.png"]),  # built at run time, ambiguous
    ('fig = f(run.figure("a.png"))', [PNG, PNG], ["a.png"]),                # shown twice, saved once
    ('fig = f(None)', [PNG], ["a.png"]),                                    # shown, not saved
])
def test_images_that_do_not_pair_with_saved_files_stay_embedded(tmp_path, source, outputs, files):
    _figure_files(tmp_path, *files)
    nb = _notebook((source, outputs))
    assert link_saved_figures(nb, tmp_path) == 0
    assert all("image/png" in o.data for o in nb.cells[0].outputs)


def test_a_name_built_at_run_time_is_found_when_one_file_matches(tmp_path):
    _figure_files(tmp_path, "per_digit_mse.png", "loss.png")
    nb = _notebook(('fig = f(run.figure(f"per_digit_{measure}.png"))', [PNG]))
    assert link_saved_figures(nb, tmp_path) == 1
    assert nb.cells[0].outputs[0].data["text/markdown"] == "![per_digit_mse](figures/per_digit_mse.png)"


def test_the_summary_notebooks_figure_is_linked_too(tmp_path):
    _figure_files(tmp_path, "recovery_by_run.png")
    nb = _notebook(('fig = figures.image_rows(rows, titles, out / "figures" / "recovery_by_run.png")', [PNG]))
    assert link_saved_figures(nb, tmp_path) == 1


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_figure_a_notebook_saves_is_found_where_the_notebook_names_it(notebook):
    """As the notebooks write them (the summary's two figures were embedded, 1.2 MB, while the test above used a
    form no notebook had): each .png a code cell names is a saved figure the pages link."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        shown = "\n".join(line for line in cell.source.splitlines() if "plt.close(" not in line)  # closed: never shown
        if cell.cell_type == "code":
            named = re.findall(r"""["']([^"'\\]+\.png)["']""", shown)
            assert [name for _, name in SAVED_FIGURE.findall(shown)] == named, cell.source


def test_two_figures_of_one_cell_are_linked_in_order(tmp_path):
    _figure_files(tmp_path, "a.png", "b.png")
    nb = _notebook(('f(run.figure("a.png"))\ng(run.figure("b.png"))', [PNG, PNG]))
    assert link_saved_figures(nb, tmp_path) == 2
    assert [o.data["text/markdown"] for o in nb.cells[0].outputs] == ["![a](figures/a.png)", "![b](figures/b.png)"]


def test_compact_png_keeps_the_picture_in_fewer_bytes():
    fig, ax = plt.subplots()
    ax.scatter(*np.random.default_rng(0).normal(size=(2, 3000)), c=np.arange(3000) % 10, cmap="tab10", s=4)
    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=110)
    plt.close(fig)
    compact = figures.compact_png(drawn.getvalue())
    assert len(compact) < 0.7 * len(drawn.getvalue())
    before = np.asarray(Image.open(io.BytesIO(drawn.getvalue())).convert("RGB"), dtype=float)
    after = np.asarray(Image.open(io.BytesIO(compact)).convert("RGB"), dtype=float)
    assert before.shape == after.shape
    assert np.abs(before - after).mean() < 2.0  # of 255: the palette loses nothing a reader sees


PAGE = ("<html><head><meta charset='utf-8'><style type='text/css'>body{color:red}</style><script>x()</script>"
        "<style>.jp{margin:0}</style></head><body><style>.dataframe{border:0}</style><p>hi</p></body></html>")


def test_pages_share_one_stylesheet_and_keep_their_output_styles(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first, second = _shared_styles(PAGE, tmp_path), _shared_styles(PAGE.replace("hi", "ho"), tmp_path)
    sheets = list(tmp_path.glob("notebook-*.css"))
    assert len(sheets) == 1 and sheets[0].read_text() == "body{color:red}\n.jp{margin:0}"
    head = first.partition("</head>")[0]
    assert f'<link rel="stylesheet" href="../{sheets[0].name}">' in head and "<style" not in head
    assert "<script>x()</script>" in head
    assert "<style>.dataframe{border:0}</style><p>hi</p>" in first and "<p>ho</p>" in second


def test_render_links_the_figures_of_an_executed_notebook(tmp_path):
    run = tmp_path / "reports" / "run"
    _figure_files(run, "loss.png")
    nbformat.write(_notebook(('fig = f(run.figure("loss.png"))', [PNG])), run / "01_train.ipynb")
    page = render_notebook(run / "01_train.ipynb")
    assert 'src="figures/loss.png"' in page.read_text()
    assert "image/png" not in (run / "01_train.ipynb").read_text()  # the notebook itself links it too
    assert len(list((tmp_path / "reports").glob("notebook-*.css"))) == 1


def _tracked(folder: str) -> list[Path]:
    """The files git tracks under `folder` (skips the test outside a git checkout)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", folder], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / n for n in names if n and (ROOT / n).is_file()]


def test_the_committed_reports_stay_under_60_mb():
    assert sum(p.stat().st_size for p in _tracked("reports")) < 60 * 2**20


def test_a_layer_without_saturation_marks_draws_no_empty_legend(recwarn):
    values = {"1:LeakyReLU": np.linspace(-3, 3, 50), "3:Sigmoid": np.linspace(-9, 9, 50)}
    fig = figures.preactivation_histograms(values, {"3:Sigmoid": {"float32 sigmoid = 1": 16.6}})
    assert [ax.get_legend() is not None for ax in fig.axes] == [False, True]
    assert not [w for w in recwarn if "legend" in str(w.message)]
    plt.close(fig)


def test_committed_reports_name_no_path_of_the_machine_that_ran_them():
    machine = (str(ROOT) + "/", "/tmp/", "/home/", "/root/")
    leaks = [str(p.relative_to(ROOT)) for p in _tracked("reports") if p.suffix in (".ipynb", ".html", ".json")
             and any(m in p.read_text(encoding="utf-8", errors="replace") for m in machine)]
    assert not leaks, f"absolute paths in {leaks}: show paths relative to the project"
