"""reports/index.html, the landing page: the question and its answer from the default run, the table
across runs, the summary notebook, each run's links and key figures, the commit and the date. Opened in
headless Chromium (Debian's `chromium`, installed by the session fixture when missing; the tests that
need it are skipped, saying why, when it cannot be had): every link and image resolves to a file under
reports/, and every image decodes."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from test_summary import FAMILY, metrics, write_run

from inverse_vae.runs.report_index import KEY_FIGURES, write_index

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 900  # apt-get update + install of chromium and its libraries
BROWSER_TIMEOUT_S = 120


def _png(path: Path, width: int = 4, height: int = 3) -> None:
    """A small valid grey PNG (no matplotlib: fast)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([128] * width) for _ in range(height))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _notebook(path: Path, title: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb))


@pytest.fixture
def project(tmp_path):
    """A project with params/ (the family's names) and reports/: the default run executed (01, 03, its
    metrics, its key figures), the other runs not, and the summary notebook executed with its figure."""
    params = tmp_path / "params"
    params.mkdir()
    for name in FAMILY:
        (params / f"{name}.yaml").write_text("")
    reports = tmp_path / "reports"
    run = write_run(reports, "default", metrics())
    for nb in ("01_train", "03_invert"):
        _notebook(run / f"{nb}.ipynb", nb)
    for figure in KEY_FIGURES:
        _png(run / "figures" / figure)
    _notebook(reports / "summary" / "99_summary.ipynb", "99_summary")
    _png(reports / "summary" / "figures" / "recovery_by_run.png")
    (reports / "summary" / "metrics").mkdir()
    (reports / "summary" / "metrics" / "99_summary.json").write_text(json.dumps({}))
    return tmp_path


class _Refs(HTMLParser):
    """Every <a href> and <img src> of a page."""

    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def _refs(page: str) -> _Refs:
    refs = _Refs()
    refs.feed(page)
    return refs


def _unresolved(refs: list[str], reports: Path, page_dir: Path) -> list[str]:
    """The references that are not a file under reports/ (Chromium's DOM keeps them as written;
    a file: URL it made absolute is read back as a path)."""
    bad = []
    for ref in refs:
        parts = urlsplit(ref)
        if parts.scheme not in ("", "file") or parts.netloc:
            bad.append(f"{ref} (not a relative link)")
            continue
        target = Path(unquote(parts.path)) if parts.scheme == "file" else page_dir / unquote(parts.path)
        target = target.resolve()
        if not target.is_file() or not target.is_relative_to(reports.resolve()):
            bad.append(ref)
    return bad


def test_the_index_renders_the_summary_table_when_metrics_exist(project):
    reports = project / "reports"
    page = write_index(reports, params_dir=project / "params").read_text()
    assert "<h1>Can a VAE decoder&#x27;s input be recovered from its output?</h1>" in page
    assert "recovers the latent of 0.03% of prior samples" in page and "the original chain fails" in page
    assert "<table class=summary>" in page and "<th>default (3 seeds)</th>" in page
    assert "<th>latent16</th>" in page and "<td class=missing>not run</td>" in page
    assert "Not run yet: default_seed1, default_seed2, latent16, leaky, squeezed, deterministic." in page
    assert "awaits the runs" in page
    assert '<a href="default/01_train.html">01_train</a> (<a href="default/01_train.ipynb">.ipynb</a>)' in page
    assert '<a href="summary/99_summary.html">99_summary</a>' in page
    assert 'src="summary/figures/recovery_by_run.png"' in page
    assert all(f'src="default/figures/{f}"' in page for f in KEY_FIGURES)
    assert "Commit unknown · rendered 20" in page  # tmp_path is no git checkout
    assert str(project) not in page  # every path relative: the page works from a clone
    refs = _refs(page)
    assert not _unresolved(refs.links + refs.images, reports, reports)


def test_without_the_summary_notebook_the_index_says_how_to_run_it(project):
    shutil.rmtree(project / "reports" / "summary")
    page = write_index(project / "reports", params_dir=project / "params").read_text()
    assert "The summary notebook has not been executed yet" in page and "<table class=summary>" in page


# --------------------------------------------------------------------------
# Headless Chromium


def _which() -> str | None:
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def _apt(*args: str) -> subprocess.CompletedProcess:
    command = ["apt-get", *args]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _install_chromium() -> str:
    """Install Debian's chromium; returns why it could not ("" when it could)."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (install Chromium by hand)"
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "not root and no sudo: cannot apt-get install chromium"
    try:
        done = _apt("install", "-y", "--no-install-recommends", "chromium")
        if done.returncode != 0:  # stale package lists: update once, then try again
            _apt("update")
            done = _apt("install", "-y", "--no-install-recommends", "chromium")
    except subprocess.TimeoutExpired:
        return f"apt-get install chromium took over {INSTALL_TIMEOUT_S} s"
    except OSError as exc:
        return f"apt-get could not run: {exc}"
    return "" if done.returncode == 0 else f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _which()
    if found is None:
        why = _install_chromium()
        found = _which()
        if found is None:
            pytest.skip(f"headless Chromium is not available: {why or 'installed, but no chromium on PATH'}")
    return found


def _dump_dom(browser: str, page: Path) -> str:
    """The DOM of `page` after Chromium loaded it (and ran its scripts)."""
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


# A page beside the index that loads it in a frame and reports, into its own DOM, each image of the index
# that did not decode (file: pages share an origin with --allow-file-access-from-files).
HARNESS = """<!doctype html><meta charset='utf-8'><body>
<iframe id=f src="index.html" onload="check()"></iframe><pre id=out>pending</pre>
<script>
function check() {
  const doc = document.getElementById('f').contentDocument;
  const images = Array.from(doc.images);
  Promise.all(images.map(i => i.decode().then(() => null, () => i.getAttribute('src')))).then(bad => {
    document.getElementById('out').textContent = JSON.stringify({n: images.length, broken: bad.filter(b => b)});
  });
}
</script>"""


def _images_decode(browser: str, reports: Path, harness_dir: Path) -> dict:
    harness = harness_dir / "index_images.html"
    harness.write_text(HARNESS.replace('src="index.html"', f'src="{(reports / "index.html").as_uri()}"'))
    dom = _dump_dom(browser, harness)
    start = dom.index('<pre id="out">') + len('<pre id="out">')
    return json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"'))


def test_the_landing_page_in_chromium_every_link_and_image_resolves(project, chromium):
    reports = project / "reports"
    write_index(reports, params_dir=project / "params")
    refs = _refs(_dump_dom(chromium, reports / "index.html"))
    assert len(refs.links) >= 2 * 3 and len(refs.images) == len(KEY_FIGURES) + 1
    assert not _unresolved(refs.links, reports, reports), "links that resolve to no file under reports/"
    assert not _unresolved(refs.images, reports, reports), "images that resolve to no file under reports/"
    decoded = _images_decode(chromium, reports, project)
    assert decoded == {"n": len(KEY_FIGURES) + 1, "broken": []}


def test_the_committed_landing_page_in_chromium(chromium):
    """reports/index.html as committed (or as the last ./run_all.sh left it): every link and image resolves."""
    reports = ROOT / "reports"
    if not (reports / "index.html").is_file():
        pytest.skip("no reports/index.html: run ./run_all.sh (or inverse-vae index) first")
    refs = _refs(_dump_dom(chromium, reports / "index.html"))
    assert refs.links, "the landing page links nothing"
    bad = _unresolved(refs.links + refs.images, reports, reports)
    assert not bad, f"links or images of reports/index.html that resolve to no file: {bad[:10]}"
