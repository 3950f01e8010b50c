"""The report site: a page per executed notebook (titled, navigable, with contents, its Markdown, figures and
tables rendered, nothing from the network, text from params shown and never run) and the landing page across
runs, checked in Chromium."""
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pandas as pd
import pytest

from workflow import pages

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
    page = pages.render_notebook(reports / "default" / "03_invert.ipynb").read_text()
    refs = _refs(page)
    assert "<title>default · 03 Invert</title>" in page and 'href="../index.html"' in page
    assert 'href="../latent16/03_invert.html"' in page and 'href="05_inverse_methods.html"' in page
    assert 'href="#1-·-Realizable-images"' in page and "Where it fails" in page.split("</aside>")[0]
    assert refs.scripts == 0 and not [r for r in refs.links + refs.sources if urlsplit(r).scheme in ("http", "https")]


def test_text_from_a_params_or_metrics_file_is_shown_never_run(reports):
    page = pages.render_notebook(reports / "default" / "03_invert.ipynb").read_text()
    assert "<script>document.title" not in page and "<img src=x onerror" not in page and _refs(page).scripts == 0
    assert "&lt;script&gt;document.title" in page  # shown as text


def test_a_page_renders_its_markdown_figures_and_tables_and_nothing_from_elsewhere(tmp_path):
    figure = "![the chain](figures/chain.png)"
    hostile = "![a](javascript:alert(1)) ![b](https://example.com/b.png) <img src='//example.com/c.png'>"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# 03 · Invert\n\nThe *chain*, `pinv`:\n\n{figure}"),
                                         nbformat.v4.new_markdown_cell(hostile), nbformat.v4.new_code_cell("frame")])
    frame = pd.DataFrame({"bce": [0.11]}, index=pd.Index(["default"], name="run"))
    nb.cells[-1].outputs = [nbformat.v4.new_output("execute_result", execution_count=1, data={
        "text/html": frame._repr_html_(), "text/plain": "frame"}), nbformat.v4.new_output("display_data", data={
        "text/markdown": "![saved](figures/saved.png)", "text/plain": "<figure>"})]
    (tmp_path / "reports" / "default").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "reports" / "default" / "03_invert.ipynb")
    page = pages.render_notebook(tmp_path / "reports" / "default" / "03_invert.ipynb").read_text()
    main = page.split("</aside>")[1]  # the cells
    assert re.search(r'<h1 id="03-[^"]+-Invert">', main) and "<em>chain</em>" in main and "<code>pinv</code>" in main
    assert _refs(main).sources == ["figures/chain.png", "figures/saved.png"]  # the hostile three lose their src
    assert "<table" in main and "<th>bce</th>" in main and "<td>0.11</td>" in main
    assert "&lt;" not in main and "<style" not in main and "style=" not in main and "example.com" not in main


def test_the_index_marks_a_failed_notebook_and_skips_a_number_of_the_wrong_type(reports):
    for run in ("default", "latent16"):
        pages.render_notebook(reports / run / "03_invert.ipynb")
    warned = []
    page = pages.write_index(reports, warn=warned.append).read_text()
    assert 'class="failed"><a href="latent16/03_invert.html">failed' in page
    assert 'class="ok"><a href="default/03_invert.html">page' in page and "not run" in page
    assert "33.0" in page or "0.33" in page  # the float64 recovery is shown; the dict where a number belongs is not
    assert _refs(page).scripts == 0 and "summary has not been executed yet" in page


def test_a_page_shows_the_parameters_the_run_was_executed_with_once_and_labelled(tmp_path):
    defaults = nbformat.v4.new_code_cell('params_file = "params/default.yaml"', metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('params_file = "params/latent16.yaml"', metadata={"tags": ["injected-parameters"]})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 02 · Evaluate"), defaults, injected,
                                         nbformat.v4.new_code_cell("x = 1")])
    (tmp_path / "reports" / "latent16").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "reports" / "latent16" / "02_evaluate.ipynb")
    main = pages.render_notebook(tmp_path / "reports" / "latent16" / "02_evaluate.ipynb").read_text().split("</aside>")[1]
    assert "latent16.yaml" in main and "default.yaml" not in main and "The parameters this run was executed with" in main
    assert len(nbformat.read(tmp_path / "reports" / "latent16" / "02_evaluate.ipynb", as_version=4).cells) == 4  # kept


@pytest.mark.parametrize("damage", ["summary not json", "summary a list", "notebook truncated", "notebook not utf-8"])
def test_the_index_names_a_damaged_file_in_one_line_and_writes_nothing(reports, damage, capsys):
    from workflow.__main__ import main

    what, how = damage.split(" ", 1)
    target = reports / "summary" / "metrics" / "99_summary.json" if what == "summary" else reports / "default" / "03_invert.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes({"not json": b'{"answer": "x', "a list": b"[1, 2]", "truncated": b'{"cells": [',
                        "not utf-8": b'{"cells": "\xff\xfe"}'}[how])
    assert main(["index", "--reports-root", str(reports)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "Traceback" not in err
    assert not (reports / "index.html").exists()


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_the_index_leads_with_the_charts_shows_each_run_in_a_grid_and_numbers_as_the_answer_quotes_them(reports):
    (reports / "summary" / "figures").mkdir(parents=True)
    for figure in ("recovery_by_run.png", "runs_overview.png", "z_other.png"):
        (reports / "summary" / "figures" / figure).write_bytes(b"png")
    for run in ("default", "latent16"):
        (reports / run / "figures").mkdir()
        (reports / run / "figures" / "methods_grid.png").write_bytes(b"png")
    (reports / "default" / "metrics" / "01_train.json").write_text('{"final_val_loss": 0.168565}')
    (reports / "default" / "metrics" / "02_evaluate.json").write_text('{"nelbo_nats": 112.450134, "probe_accuracy": 0.9163}')
    (reports / "default" / "metrics" / "03_invert.json").write_text(json.dumps({"realizable": {"prior": {
        "float64": {"success_1e-6": 0.3461}, "float32": {"success_1e-4": 0.0003}}}}))
    page = pages.write_index(reports, warn=lambda line: None).read_text()
    refs = _refs(page)
    assert refs.sources[:2] == ["summary/figures/runs_overview.png", "summary/figures/z_other.png"]
    assert "summary/figures/recovery_by_run.png" not in refs.sources and "summary/figures/recovery_by_run.png" in refs.links
    grid = _refs(page.split('<div class="grid">')[1].split("</div>")[0])
    assert grid.sources == ["default/figures/methods_grid.png", "latent16/figures/methods_grid.png"]
    assert "default/05_inverse_methods.html" in grid.links
    for shown in ("0.1686", "112.45", "91.6%", "0.03%", "34.6%"):
        assert f"<td>{shown}</td>" in page
    assert not re.search(r"0\.0003|112\.450|0\.3461|0\.9163", page)


def test_the_index_names_the_commit_of_its_metrics_and_says_when_they_changed_since(reports):
    _git(reports, "init", "-q")
    _git(reports, "add", ".")
    _git(reports, "commit", "-qm", "metrics")
    metrics_commit = _git(reports, "rev-parse", "--short", "HEAD")
    (reports / "notes.txt").write_text("a later commit that changes no metrics")
    _git(reports, "add", ".")
    _git(reports, "commit", "-qm", "later")
    assert f"Metrics of commit {metrics_commit} ·" in pages.write_index(reports, warn=lambda line: None).read_text()
    (reports / "default" / "metrics" / "03_invert.json").write_text("{}")
    page = pages.write_index(reports, warn=lambda line: None).read_text()
    assert f"Metrics of commit {metrics_commit}, with uncommitted changes ·" in page


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


def _page_shows(page) -> dict:
    return page.evaluate("""() => ({
        title: document.title, scripts: document.scripts.length,
        headings: document.querySelectorAll('main h1, main h2, main h3, body > h1, body > h2').length,
        images: [...document.images].map(i => ({src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0})),
        tables: document.querySelectorAll('.jp-OutputArea-output table, body > div.wide table').length,
        rendered: [...document.querySelectorAll('.jp-RenderedMarkdown, .jp-RenderedHTML, body > p')].map(e => e.innerText),
        lost: [...document.querySelectorAll('a[href^="#"]')].map(a => a.hash.slice(1))
              .filter(id => id && !document.getElementById(id) && !document.getElementById(decodeURIComponent(id)))
    })""")


def _expected(notebook: Path) -> dict:
    """What a page must show, counted in its executed notebook: headings of its Markdown, figures, DataFrames."""
    nb = nbformat.read(notebook, as_version=4)
    outputs = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return {"headings": sum(len(pages.HEADING.findall(c.source)) for c in nb.cells if c.cell_type == "markdown"),
            "images": sum("image/png" in d or "](figures/" in d.get("text/markdown", "") for d in outputs),
            "tables": sum("<table" in d.get("text/html", "") for d in outputs)}


@pytest.fixture(scope="module")
def offline(chromium):
    """A headless Chromium page that reaches nothing but files: every other request is aborted and recorded."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install the [test] extra)")
    from lab import browser_page

    with browser_page(chromium) as page:
        page.asked, page.dialogs = [], []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                   else (page.asked.append(route.request.url), route.abort()))
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        yield page


MARKUP = re.compile(r"</?(?:h[1-6]|p|a|img|em|strong|code|pre|div|span|ul|li|table|thead|tbody|tr|th|td|style|script)\b")


@pytest.mark.slow
def test_every_committed_page_in_chromium_renders_its_headings_figures_and_tables_offline(offline):
    listed = subprocess.run(["git", "ls-files", "reports/*.html"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert len(listed) > 40 and "reports/summary/99_summary.html" in listed and "reports/explore/98_explore.html" in listed
    for name in listed:
        offline.goto((ROOT / name).as_uri())
        shows, notebook = _page_shows(offline), (ROOT / name).with_suffix(".ipynb")
        want = _expected(notebook) if notebook.is_file() else {"headings": 4, "images": 1, "tables": 1}
        assert shows["headings"] >= max(want["headings"], 1), f"{name}: {shows['headings']} headings, {want}"
        assert len(shows["images"]) >= want["images"] and shows["tables"] >= want["tables"], f"{name}: {shows}, {want}"
        assert all(i["loaded"] for i in shows["images"]), f"{name}: figures that did not load: {shows['images']}"
        shown = [m.group() for text in shows["rendered"] for m in MARKUP.finditer(text)]
        assert not shown, f"{name} shows markup as text: {shown[:5]}"
        assert shows["scripts"] == 0 and not shows["lost"], f"{name}: links to no heading: {shows['lost'][:5]}"
    assert not offline.asked and not offline.dialogs, f"asked the network for {offline.asked[:5]}"


@pytest.mark.slow
def test_injected_text_stays_text_in_chromium(reports, offline):
    offline.goto(pages.render_notebook(reports / "default" / "03_invert.ipynb").as_uri())
    shows = _page_shows(offline)
    assert shows["title"] == "default · 03 Invert" and shows["scripts"] == 0 and not offline.dialogs
    assert any('<script>document.title="pwned"</script>' in text for text in shows["rendered"])
    assert offline.evaluate("document.querySelectorAll('[onerror], [onload], [onclick]').length") == 0
    assert not offline.asked
