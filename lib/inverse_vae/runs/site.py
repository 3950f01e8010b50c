"""The report site: a page per executed notebook (nbconvert with the study's template) and the landing page
reports/index.html (a jinja2 template), linked both ways, with no request to the network.

Pages are sanitized (nbconvert's sanitize_html): text a params or metrics file carries into a notebook's
output is shown, never run. Their ~260 kB of nbconvert styles are stored once, in one shared stylesheet.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import time
from pathlib import Path

import jinja2
import nbformat
from markupsafe import Markup
from nbconvert import HTMLExporter

from ..constants import NOTEBOOKS, SUMMARY
from ..core.files import atomic_write
from ..study import summary
from .figure_links import link_saved_figures
from .run import project_root

TEMPLATES = Path(__file__).parent / "templates"
TITLES = {"01_train": "Train", "02_evaluate": "Evaluate", "03_invert": "Invert", "04_failure_analysis": "Failure analysis",
          "05_inverse_methods": "Better inverses", SUMMARY: "The runs side by side", "98_explore": "Explorer"}
STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*$", re.M)


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def failed(notebook) -> bool:
    """Whether an executed notebook holds an error (it raised, and was published with the error)."""
    return any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))


def _toc(notebook) -> str:
    """Headings of the Markdown cells, linked to the ids nbconvert gives them."""
    items = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for hashes, text in HEADING.findall(cell.source):
            anchor = re.sub(r"\s", "-", text.strip())
            items.append(f'<li style="margin-left:{len(hashes) - 1}em"><a href="#{html.escape(anchor, quote=True)}">'
                         f"{html.escape(text)}</a></li>")
    return f'<aside class="toc"><b>Contents</b><ul>{"".join(items)}</ul></aside>' if items else ""


def _nav(page: Path) -> str:
    """Back to the index, this run's other notebooks, and the same notebook in the other runs."""
    run, stem, reports = page.parent.name, page.stem, page.parent.parent
    links = ['<a href="../index.html">index</a>']
    for other in (NOTEBOOKS if stem in NOTEBOOKS else (stem,)):
        label = html.escape(f"{other[:2]} {TITLES.get(other, other)}")
        links.append(f'<span class="here">{label}</span>' if other == stem else f'<a href="{other}.html">{label}</a>')
    runs = sorted(p.parent.name for p in reports.glob(f"*/{stem}.ipynb") if p.parent.name not in (run, "scratch"))
    if runs:
        links.append("· same notebook, other runs: " + " ".join(f'<a href="../{html.escape(r)}/{stem}.html">{html.escape(r)}</a>'
                                                               for r in runs))
    return f'<nav class="study"><b>{html.escape(run)}</b> · {" ".join(links)}</nav>'


def _shared_styles(body: str, reports: Path) -> str:
    """nbconvert's styles in <head> moved into one stylesheet beside the run folders, named by its content."""
    head, end, rest = body.partition("</head>")
    css = "\n".join(STYLE_BLOCK.findall(head))
    if not css or not end:
        return body
    sheet = reports / f"notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    if not sheet.is_file():
        atomic_write(sheet, css)
    before, _, after = head.partition("<style")
    return before + f'<link rel="stylesheet" href="../{sheet.name}">\n' + STYLE_BLOCK.sub("", "<style" + after) + end + rest


def render_notebook(path: Path) -> Path:
    """Write NN_name.html beside the executed NN_name.ipynb: titled by run and notebook, navigation, contents."""
    notebook = _read(path)
    if link_saved_figures(notebook, path.parent):  # each figure stored once: linked, not embedded
        atomic_write(path, nbformat.writes(notebook))
    exporter = HTMLExporter(template_name="study", extra_template_basedirs=[str(TEMPLATES)], sanitize_html=True)
    title = f"{path.parent.name} · {path.stem[:2]} {TITLES.get(path.stem, path.stem)}"
    body, _ = exporter.from_notebook_node(notebook, resources={
        "metadata": {"name": title}, "study_nav": _nav(path), "study_toc": _toc(notebook)})
    return atomic_write(path.with_suffix(".html"), _shared_styles(body, path.parent.parent))


def _commit(folder: Path) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _runs(reports: Path, names) -> list[dict]:
    """Per run: its notebooks (page, or not run, or failed) for the index's grid."""
    rows = []
    for name in names:
        cells = []
        for stem in NOTEBOOKS:
            nb = reports / name / f"{stem}.ipynb"
            state = "not run" if not nb.is_file() else "failed" if failed(_read(nb)) else "ok"
            cells.append({"href": f"{name}/{stem}.html", "state": state, "label": stem[:2]})
        rows.append({"name": name, "cells": cells})
    return rows


def write_index(reports: Path, warn=print) -> Path:
    """reports/index.html: the question, its answer from the summary, the charts and table across runs,
    every run's notebooks (failed ones marked), the commit and the date."""
    reports, root = Path(reports), project_root()
    frame = summary.family_frame(reports, root / "params", warn)
    summary_json = reports / "summary" / "metrics" / f"{SUMMARY}.json"
    answer = json.loads(summary_json.read_text()).get("answer", "") if summary_json.is_file() else ""
    figures = sorted(p.relative_to(reports).as_posix() for p in (reports / "summary" / "figures").glob("*.png"))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    page = env.get_template("index.html.j2").render(
        question=summary.QUESTION, answer=answer, table=Markup(summary.table(frame).to_html(escape=True, na_rep="—")),
        figures=figures, runs=_runs(reports, frame.index), designs=frame["design"].to_dict(),
        summary_page=(reports / "summary" / f"{SUMMARY}.html").is_file(),
        explore_page=(reports / "explore" / "98_explore.html").is_file(), commit=_commit(reports),
        stamp=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    return atomic_write(reports / "index.html", page)
