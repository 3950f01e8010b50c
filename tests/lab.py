"""Driving JupyterLab in headless Chromium (Playwright pointed at the system's chromium): shared by the browser
test (tests/runs/test_jupyterlab.py) and the interactive-time benchmark (bench/lab_time.py)."""
import contextlib
import socket
import subprocess
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "study-test"

# Every cell ran: the last code cell has its execution count and no cell is still queued ([*]).
RAN_ALL = """() => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.innerText);
                      return /\\[\\d+\\]/.test(prompts[prompts.length - 1] || '') && !prompts.some(p => p.includes('*')); }"""


@contextlib.contextmanager
def jupyterlab(root: Path):
    """JupyterLab serving `root` on a free port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(root / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root",
                               f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                               f"--ServerApp.root_dir={root}"], cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def browser_page(chromium: str):
    """One page of headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        try:
            yield browser.new_page(viewport={"width": 1500, "height": 1000})
        finally:
            browser.close()


def open_notebook(page, lab: str, notebook: str) -> None:
    """Open one notebook (path relative to the served folder) alone: `reset` forgets the tabs of earlier visits."""
    page.goto(f"{lab}/lab/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.get_by_text("| Idle").wait_for(timeout=120_000)  # the kernel is up


def run_all_cells(page, timeout_s: float) -> float:
    """Run every cell (Run > Run All Cells); seconds until every code cell has its execution count."""
    started = time.time()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RAN_ALL, timeout=timeout_s * 1000)
    return time.time() - started


def cell_errors(page) -> list[str]:
    """The stderr outputs that carry a traceback or an error."""
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    return [t for t in texts if "Traceback" in t or "Error" in t]


def save(page) -> None:
    page.keyboard.press("Control+s")
    time.sleep(2)


def reader_copy(notebook: str, params: str) -> Path:
    """The notebook with `params` in its parameters cell, in the scratch folder (the committed one untouched)."""
    source = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in source.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = f'params_file = "{params}"\nreports_root = None'
    copy = ROOT / "reports" / "scratch" / "notebooks" / f"{notebook}_{Path(params).stem}.ipynb"
    copy.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(source, copy)
    return copy
