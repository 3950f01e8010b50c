"""The report site: a page per executed notebook (nbconvert, templates/study) and the landing page reports/index.html,
linked both ways, with no request to the network. Pages are sanitized with an allow-list of what their Markdown,
figures and tables use: text from a params or metrics file is shown, never run. nbconvert's ~260 kB of styles are
stored once, and each figure once (linked, not embedded).
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import bleach
import jinja2
import nbformat
from markupsafe import Markup
from nbconvert import HTMLExporter

from inverse_vae.constants import NOTEBOOKS, SUMMARY
from inverse_vae.core.files import atomic_write
from inverse_vae.errors import StudyError
from inverse_vae.runs.run import project_root
from inverse_vae.study import summary

from .plan import failed, index_digest, page_digest

TEMPLATES = Path(__file__).parent / "templates"
TITLES = {"01_train": "Train", "02_evaluate": "Evaluate", "03_invert": "Invert", "04_failure_analysis": "Failure analysis",
          "05_inverse_methods": "Better inverses", SUMMARY: "The runs side by side", "98_explore": "Explorer"}
STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*$", re.M)
# run.figure("name.png") in a run's notebooks, out / "figures" / "name.png" in the summary's, or an f-string name
# whose one file on disk matches
SAVED_FIGURE = re.compile(r"""(?:\brun\.figure\(\s*|\bout\s*/\s*["']figures["']\s*/\s*)(f?)["']([^"'\\]+\.png)["']""")
# The landing page: summary charts, the across-runs one first; its per-run column of digits (notebook 99) is linked,
# and each run's digits and D(ẑ) of a few methods (notebook 05) are shown as a grid instead
LEAD_CHART, ONE_COLUMN, RUN_FIGURE = "runs_overview.png", "recovery_by_run.png", "methods_grid.png"
# What rendered Markdown and DataFrames use; any other tag is shown as text, any other attribute dropped
PAGE_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "img", "em", "strong", "code", "pre", "span", "div", "ul", "ol",
             "li", "blockquote", "br", "hr", "table", "thead", "tbody", "tr", "th", "td"}


def _relative_image(tag: str, name: str, value: str) -> bool:
    """An image's alt, and a src that names a file beside the page: nothing from another site or a script."""
    return name == "alt" or name == "src" and not urlsplit(value).scheme and not urlsplit(value).netloc


PAGE_ATTRIBUTES = {"*": ["class"], **{f"h{level}": ["id"] for level in range(1, 7)}, "a": ["href"], "img": _relative_image,
                   "th": ["colspan", "rowspan"], "td": ["colspan", "rowspan"]}


def clean_html(html) -> str:
    """nbconvert's `clean_html` filter with the pages' allow-list; a DataFrame's <style scoped> block is dropped."""
    return bleach.clean(STYLE_BLOCK.sub("", str(html)), tags=PAGE_TAGS, attributes=PAGE_ATTRIBUTES,
                        protocols={"http", "https", "mailto"})


def _saved_file(figures: Path, formatted: str, name: str) -> str | None:
    """The file a cell saved: `name`, or the one file an f-string's pattern matches; None if not there or ambiguous."""
    matches = list(figures.glob(re.sub(r"\{[^{}]*\}", "*", name) if formatted else name))
    return matches[0].name if len(matches) == 1 else None


def link_saved_figures(nb, folder: Path) -> int:
    """Replace, in place, each embedded PNG of a notebook living in `folder` by a Markdown link to the file its
    cell saved under folder/figures/, where a cell's images and saved files pair one to one, in order (else the
    cell keeps its images: nothing is lost, only not shared). Returns how many were linked."""
    linked = 0
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        names = [_saved_file(folder / "figures", formatted, name) for formatted, name in SAVED_FIGURE.findall(cell.source)]
        if not images or len(names) != len(images) or None in names:
            continue
        for output, name in zip(images, names):
            output["data"] = {"text/markdown": f"![{Path(name).stem}](figures/{name})", "text/plain": f"<figure: figures/{name}>"}
            output["metadata"] = {}
        linked += len(images)
    return linked


def _shared_styles(page: str, reports: Path) -> str:
    """The <style> blocks of <head> moved into one stylesheet beside the run folders, named by its content."""
    head, end, rest = page.partition("</head>")
    css = "\n".join(STYLE_BLOCK.findall(head))
    sheet = reports / f"notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    if not sheet.is_file():
        atomic_write(sheet, css)
    head = STYLE_BLOCK.sub(f'<link rel="stylesheet" href="../{sheet.name}">\n', head, count=1)
    return STYLE_BLOCK.sub("", head) + end + rest


def render_notebook(path: Path) -> Path:
    """Write NN_name.html beside the executed NN_name.ipynb: titled by run and notebook, navigation, contents."""
    notebook = nbformat.read(path, as_version=4)
    if link_saved_figures(notebook, path.parent):
        atomic_write(path, nbformat.writes(notebook))
    run, stem, reports = path.parent.name, path.stem, path.parent.parent
    notebook.cells = _parameters_once(notebook.cells)
    study = {"run": run, "stem": stem, "titles": TITLES, "notebooks": NOTEBOOKS if stem in NOTEBOOKS else (stem,),
             "runs": sorted(p.parent.name for p in reports.glob(f"*/{stem}.ipynb") if p.parent.name not in (run, "scratch")),
             "toc": [(len(hashes), text, re.sub(r"\s", "-", text)) for cell in notebook.cells if cell.cell_type == "markdown"
                     for hashes, text in HEADING.findall(cell.source)]}  # the ids nbconvert gives headings
    exporter = HTMLExporter(template_name="study", extra_template_basedirs=[str(TEMPLATES)], sanitize_html=True,
                            filters={"clean_html": clean_html})
    page, _ = exporter.from_notebook_node(notebook, resources={
        "metadata": {"name": f"{run} · {stem[:2]} {TITLES.get(stem, stem)}"}, "study": study})
    return atomic_write(path.with_suffix(".html"), _made_from(_shared_styles(page, reports), page_digest(path)))


def _made_from(page: str, digest: str) -> str:
    """The page records the digest of what it shows: the workflow re-renders it when that changes (plan.py)."""
    return page.replace("<head>", f'<head>\n<meta name="inverse-vae-made-from" content="{digest}">', 1)


def _parameters_once(cells: list) -> list:
    """The page shows the parameters the run was executed with once, labelled: papermill's injected cell, not
    the notebook's defaults it replaced (a notebook run by hand keeps its own parameters cell)."""
    tags = [set(cell.get("metadata", {}).get("tags", [])) for cell in cells]
    if not any("injected-parameters" in t for t in tags):
        return cells
    label = nbformat.v4.new_markdown_cell("*The parameters this run was executed with (papermill put them in place "
                                          "of the notebook's defaults):*", id="injected-parameters-label")
    return [c for cell, t in zip(cells, tags) if "parameters" not in t
            for c in ([label, cell] if "injected-parameters" in t else [cell])]


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "--no-optional-locks", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _metrics_commit(reports: Path) -> str:
    """The last commit that changed a run's metrics (what the index's numbers are), and whether they have changed since."""
    commit = _git(reports, "log", "-1", "--format=%h", "--", "*/metrics/*")
    changed = _git(reports, "status", "--porcelain", "--", "*/metrics/*")
    return f"{commit or 'unknown'}{', with uncommitted changes' if changed else ''}"


def _read_json(path: Path, what: str) -> dict:
    """A JSON object the index reads, or one line naming the file (truncated, not UTF-8, not an object)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StudyError(f"{path}: not readable {what} ({type(exc).__name__}); restore it from git or re-run it") from None
    if not isinstance(value, dict):
        raise StudyError(f"{path}: holds {type(value).__name__}, not {what}; restore it from git or re-run it")
    return value


def _state(executed: Path) -> str:
    return "not run" if not executed.is_file() else "failed" if failed(_read_json(executed, "an executed notebook")) else "ok"


def write_index(reports_root: Path, warn=print) -> Path:
    """reports/index.html: the question, its answer from the summary, the charts and table across runs, a grid of every
    run's digits, every run's notebooks (failed ones marked), the commit of the metrics shown and the date."""
    reports = Path(reports_root)
    frame = summary.family_frame(reports, project_root() / "params", warn)
    answer = reports / "summary" / "metrics" / f"{SUMMARY}.json"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    charts = sorted((reports / "summary" / "figures").glob("*.png"), key=lambda p: (p.name != LEAD_CHART, p.name))
    page = env.get_template("index.html.j2").render(
        answer=_read_json(answer, "summary metrics").get("answer", "") if answer.is_file() else "",
        table=Markup(summary.table(frame, formatted=True).to_html(escape=True, na_rep="—")), designs=frame["design"].to_dict(),
        charts=[p.relative_to(reports).as_posix() for p in charts if p.name != ONE_COLUMN],
        one_column=next((p.relative_to(reports).as_posix() for p in charts if p.name == ONE_COLUMN), None),
        grid={run: f"{run}/figures/{RUN_FIGURE}" for run in frame.index if (reports / run / "figures" / RUN_FIGURE).is_file()},
        notebooks=NOTEBOOKS, runs={run: {nb: _state(reports / run / f"{nb}.ipynb") for nb in NOTEBOOKS} for run in frame.index},
        summary_page=(reports / "summary" / f"{SUMMARY}.html").is_file(),
        explore_page=(reports / "explore" / "98_explore.html").is_file(), commit=_metrics_commit(reports),
        stamp=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return atomic_write(reports / "index.html", _made_from(page, index_digest(reports)))
