"""The researcher's path, in a real browser: JupyterLab on a free port, driven by headless Chromium
(Playwright pointed at the system's chromium). The explorer runs top to bottom and its figure changes when
a control does; notebook 03 runs on a smoke-sized scratch run; no cell errors; git stays clean."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lab import browser_page, cell_errors, jupyterlab, open_notebook, reader_copy, run_all_cells, save

from inverse_vae.core.training import train
from inverse_vae.runs.run import open_run
from inverse_vae.study.shared import train_val_images

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def lab():
    with jupyterlab(ROOT) as url:
        yield url


@pytest.fixture(scope="module")
def page(lab, chromium):
    with browser_page(chromium) as page:
        yield page


def test_the_explorer_runs_and_its_figure_follows_the_controls(page, lab):
    before = _git_status()
    open_notebook(page, lab, "notebooks/98_explore.ipynb")
    run_all_cells(page, 600)
    assert not cell_errors(page)
    figure = page.locator(".widget-output img").last
    figure.wait_for(timeout=120_000)  # the controls' figure: test image 0
    first = figure.get_attribute("src")
    digit = page.locator(".widget-dropdown", has_text="digit").locator("select")
    assert digit.is_enabled()
    page.get_by_role("button", name="prior sample").click()
    page.wait_for_function("src => [...document.querySelectorAll('.widget-output img')].pop()?.src !== src",
                           arg=first, timeout=120_000)  # redrawn for prior sample 0
    assert digit.is_disabled()  # a prior sample has no digit
    page.get_by_role("button", name="test image").click()
    digit.wait_for(state="attached")
    page.wait_for_function("() => !document.querySelectorAll('.widget-dropdown select')[1].disabled", timeout=30_000)
    save(page)
    saved = nbformat.read(ROOT / "notebooks" / "98_explore.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in saved.cells)  # the save hook wrote it as committed
    assert _git_status() == before


@pytest.fixture(scope="module")
def smoke_run():
    """A smoke-sized scratch run whose model 01 made (as if 01 had run here)."""
    run = open_run(ROOT / "params" / "smoke.yaml", None, ROOT, say=lambda line: None)
    shutil.rmtree(run.dir, ignore_errors=True)
    (x_train, _), (x_val, _) = train_val_images(run, log=lambda line: None)
    train(run, x_train, x_val, progress=False, say=lambda line: None)
    return run


def test_notebook_03_runs_on_a_smoke_scratch_run(page, lab, smoke_run):
    """A reader's copy of 03 with the smoke params, in the git-ignored scratch folder (the committed notebook
    is never edited), run top to bottom on the scratch run."""
    copy = reader_copy("03_invert", "params/smoke.yaml")
    before = _git_status()
    open_notebook(page, lab, copy.relative_to(ROOT).as_posix())
    seconds = run_all_cells(page, 900)
    assert not cell_errors(page)
    assert (smoke_run.metrics / "03_invert.json").is_file() and seconds > 0
    save(page)
    assert _git_status() == before
    print(f"notebook 03 on the smoke scratch run in JupyterLab: {seconds:.0f} s")


def test_the_interactive_time_benchmark_prints_both_times_and_their_ratio(smoke_run, chromium):
    done = subprocess.run([sys.executable, "bench/lab_time.py", "--params", "params/smoke.yaml", "--repeats", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    ratio = re.search(r"batch ([\d.]+) s, JupyterLab ([\d.]+) s, ratio ([\d.]+)", done.stdout.splitlines()[-1])
    assert ratio and float(ratio.group(1)) > 0 and float(ratio.group(2)) > 0
