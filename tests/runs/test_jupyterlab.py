"""The researcher's path, in a real browser: JupyterLab on a free port, driven by headless Chromium
(Playwright pointed at the system's chromium). The explorer runs top to bottom and its figure changes when
a control does; notebook 03 runs on a smoke-sized scratch run; no cell errors; git stays clean."""
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from inverse_vae.core.training import train
from inverse_vae.runs.run import open_run
from inverse_vae.study.shared import train_val_images

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
TOKEN = "study-test"


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def lab():
    """JupyterLab serving the project on a free port; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root",
                               f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                               f"--ServerApp.root_dir={ROOT}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(lab, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        yield browser.new_page(viewport={"width": 1500, "height": 1000})
        browser.close()


def _open(page, lab: str, notebook: str) -> None:
    page.goto(f"{lab}/lab/tree/notebooks/{notebook}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)


def _set_parameters(page, text: str) -> None:
    """Replace the parameters cell's code (the second cell) with `text`."""
    editor = page.locator(".jp-Notebook .jp-CodeCell").first.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(text)


def _run_all(page, timeout_s: float) -> float:
    """Run every cell (the command palette's "Run All Cells"); seconds until the kernel is idle again."""
    started = time.time()
    page.keyboard.press("Control+Shift+c")
    page.keyboard.type("Run All Cells")
    page.keyboard.press("Enter")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='busy']", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_s * 1000)
    return time.time() - started


def _errors(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def test_the_explorer_runs_and_its_figure_follows_the_controls(page, lab):
    before = _git_status()
    _open(page, lab, "98_explore.ipynb")
    _run_all(page, 600)
    assert not [e for e in _errors(page) if "Traceback" in e or "Error" in e]
    figure = page.locator(".widget-output img, .jp-OutputArea-output img").last
    figure.wait_for(timeout=120_000)
    first = figure.get_attribute("src")
    page.get_by_role("button", name="prior sample").click()
    page.wait_for_function("src => [...document.querySelectorAll('.widget-output img')].pop()?.src !== src",
                           arg=first, timeout=120_000)
    page.keyboard.press("Control+s")
    time.sleep(2)
    assert _git_status() == before  # saved with outputs, and git sees no change


def test_notebook_03_runs_on_a_smoke_scratch_run(page, lab):
    run = open_run(ROOT / "params" / "smoke.yaml", None, ROOT, say=lambda line: None)
    shutil.rmtree(run.dir, ignore_errors=True)
    (x_train, _), (x_val, _) = train_val_images(run, log=lambda line: None)
    train(run, x_train, x_val, progress=False, say=lambda line: None)  # 01's model, as if 01 had run here
    before = _git_status()
    _open(page, lab, "03_invert.ipynb")
    _set_parameters(page, 'params_file = "params/smoke.yaml"\nreports_root = None')
    seconds = _run_all(page, 900)
    assert not [e for e in _errors(page) if "Traceback" in e or "Error" in e]
    assert (run.metrics / "03_invert.json").is_file() and seconds > 0
    page.keyboard.press("Control+s")
    time.sleep(2)
    assert _git_status() == before
