"""The report site: a page per executed notebook (titled, navigable, with contents, nothing from the
network, text from params shown and never run) and the landing page across runs, checked in Chromium."""
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from inverse_vae.runs import site

ROOT = Path(__file__).resolve().parents[2]
INJECTED = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">'


def _executed(path: Path, *cells, error: bool = False) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "P", "language": "python"}})
    for kind, text in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text))
    code = nbformat.v4.new_code_cell("run()")
    code.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": f"**Hypothesis:** {INJECTED}",
                                                                 "text/html": INJECTED})]
    if error:
        code.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=["boom"]))
    nb.cells.append(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.sources, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.scripts += tag == "script"
        self.links += [attrs["href"]] if tag in ("a", "link") and attrs.get("href") else []
        self.sources += [attrs["src"]] if attrs.get("src") else []


def _refs(text: str) -> _Refs:
    refs = _Refs()
    refs.feed(text)
    return refs


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """reports/ with two runs' executed 03 (one of them failed) and their metrics; params/ of the project."""
    monkeypatch.chdir(ROOT)
    folder = tmp_path / "reports"
    for run, failed in (("default", False), ("latent16", True)):
        _executed(folder / run / "03_invert.ipynb", ("md", "# 03 · Invert"), ("md", "## 1 · Realizable images"),
                  ("md", "### Where it fails"), error=failed)
        (folder / run / "metrics").mkdir()
        (folder / run / "metrics" / "03_invert.json").write_text(json.dumps({"realizable": {"prior": {
            "float64": {"success_1e-6": 0.33}, "float32": {"success_1e-4": {"not": "a number"}}}}}))
    return folder


def test_a_page_is_titled_navigable_has_contents_and_asks_the_network_nothing(reports):
    page = site.render_notebook(reports / "default" / "03_invert.ipynb").read_text()
    refs = _refs(page)
    assert "<title>default · 03 Invert</title>" in page and 'href="../index.html"' in page
    assert 'href="../latent16/03_invert.html"' in page and 'href="05_inverse_methods.html"' in page
    assert 'href="#1-·-Realizable-images"' in page and "Where it fails" in page.split("</aside>")[0]
    assert refs.scripts == 0 and not [r for r in refs.links + refs.sources if urlsplit(r).scheme in ("http", "https")]


def test_text_from_a_params_or_metrics_file_is_shown_never_run(reports):
    page = site.render_notebook(reports / "default" / "03_invert.ipynb").read_text()
    assert "<script>document.title" not in page and "<img src=x onerror" not in page and _refs(page).scripts == 0
    assert "&lt;script&gt;document.title" in page  # shown as text


def test_the_index_marks_a_failed_notebook_and_skips_a_number_of_the_wrong_type(reports):
    for run in ("default", "latent16"):
        site.render_notebook(reports / run / "03_invert.ipynb")
    warned = []
    page = site.write_index(reports, warn=warned.append).read_text()
    assert 'class="failed"><a href="latent16/03_invert.html">failed' in page
    assert 'class="ok"><a href="default/03_invert.html">page' in page and "not run" in page
    assert "33.0" in page or "0.33" in page  # the float64 recovery is shown; the dict where a number belongs is not
    assert _refs(page).scripts == 0 and "summary has not been executed yet" in page


def _dump_dom(browser: str, page: Path) -> str:
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--disable-background-networking", "--allow-file-access-from-files", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


def _unresolved(refs: list[str], page: Path) -> list[str]:
    local = [unquote(urlsplit(r).path) for r in refs if not urlsplit(r).scheme and not r.startswith("#")]
    return [r for r in local if r and not (page.parent / r).resolve().exists()]


@pytest.mark.slow
def test_the_committed_site_in_chromium_every_link_and_image_resolves(chromium):
    pages = [ROOT / "reports" / "index.html", *sorted((ROOT / "reports" / "default").glob("*.html"))]
    for page in pages:
        refs = _refs(_dump_dom(chromium, page))
        assert refs.links, f"{page.name} links nothing"
        bad = _unresolved(refs.links + refs.sources, page)
        assert not bad, f"{page.relative_to(ROOT)}: links or images that resolve to no file: {bad[:10]}"
