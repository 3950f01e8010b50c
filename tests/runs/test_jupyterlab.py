"""The researcher's path, in a real browser: JupyterLab on a free port, driven by headless Chromium
(Playwright pointed at the system's chromium). The explorer runs top to bottom and its figure changes when
a control does; notebook 03 runs on a smoke-sized scratch run; no cell errors; git stays clean."""
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nbformat
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
    """Open one notebook (path relative to the project) alone: `reset` forgets the tabs of earlier visits."""
    page.goto(f"{lab}/lab/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.get_by_text("| Idle").wait_for(timeout=120_000)  # the kernel is up


# Every cell ran: the last code cell has its execution count and no cell is still queued ([*]).
RAN_ALL = """() => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.innerText);
                      return /\\[\\d+\\]/.test(prompts[prompts.length - 1] || '') && !prompts.some(p => p.includes('*')); }"""


def _run_all(page, timeout_s: float) -> float:
    """Run every cell (Run > Run All Cells); seconds until every code cell has its execution count."""
    started = time.time()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RAN_ALL, timeout=timeout_s * 1000)
    return time.time() - started


def _errors(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def test_the_explorer_runs_and_its_figure_follows_the_controls(page, lab):
    before = _git_status()
    _open(page, lab, "notebooks/98_explore.ipynb")
    _run_all(page, 600)
    assert not [e for e in _errors(page) if "Traceback" in e or "Error" in e]
    figure = page.locator(".widget-output img").last
    figure.wait_for(timeout=120_000)  # the controls' figure: test image 0
    first = figure.get_attribute("src")
    page.get_by_role("button", name="prior sample").click()
    page.wait_for_function("src => [...document.querySelectorAll('.widget-output img')].pop()?.src !== src",
                           arg=first, timeout=120_000)  # redrawn for prior sample 0
    page.keyboard.press("Control+s")
    time.sleep(2)
    assert _git_status() == before  # saved with outputs, and git sees no change


def test_notebook_03_runs_on_a_smoke_scratch_run(page, lab):
    """A reader's copy of 03 with the smoke params, in the git-ignored scratch folder (the committed notebook
    is never edited), run top to bottom on a scratch run whose model 01 made."""
    run = open_run(ROOT / "params" / "smoke.yaml", None, ROOT, say=lambda line: None)
    shutil.rmtree(run.dir, ignore_errors=True)
    (x_train, _), (x_val, _) = train_val_images(run, log=lambda line: None)
    train(run, x_train, x_val, progress=False, say=lambda line: None)  # 01's model, as if 01 had run here
    notebook = nbformat.read(ROOT / "notebooks" / "03_invert.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = 'params_file = "params/smoke.yaml"\nreports_root = None'
    copy = ROOT / "reports" / "scratch" / "notebooks" / "03_invert_smoke.ipynb"
    copy.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, copy)
    before = _git_status()
    _open(page, lab, copy.relative_to(ROOT).as_posix())
    seconds = _run_all(page, 900)
    assert not [e for e in _errors(page) if "Traceback" in e or "Error" in e]
    assert (run.metrics / "03_invert.json").is_file() and seconds > 0
    page.keyboard.press("Control+s")
    time.sleep(2)
    assert _git_status() == before
    print(f"notebook 03 on the smoke scratch run in JupyterLab: {seconds:.0f} s")
