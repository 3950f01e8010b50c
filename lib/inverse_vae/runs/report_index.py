"""reports/index.html: one page linking every run's rendered notebooks and headline numbers.

A broken run (a notebook or metrics file that cannot be read, a page that cannot be written) is
left out with a warning line; the others are still rendered.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ..core.files import atomic_write
from ..errors import StudyError
from .figure_links import link_saved_figures


class BrokenRun(StudyError):
    """A run folder the index cannot show; the message names the file."""

# (metrics file, key path, label, format): the numbers a reader looks for first.
HEADLINES = [
    ("01_train", ("final_val_loss",), "validation loss (original convention)", "{:.4f}"),
    ("01_train", ("seconds",), "training seconds", "{:.0f}"),
    ("01_train", ("device",), "device", "{}"),
    ("02_evaluate", ("test_loss_original",), "test loss (original convention)", "{:.4f}"),
    ("02_evaluate", ("nelbo_nats",), "negative ELBO (nats/image)", "{:.2f}"),
    ("02_evaluate", ("probe_accuracy",), "linear probe accuracy", "{:.3f}"),
    ("03_invert", ("realizable", "prior", "float64", "success_1e-6"),
     "pinv chain, float64 no clamp: prior recovered to 1e-6", "{:.3f}"),
    ("03_invert", ("real", "original_clamp", "bce"), "original chain on real images: BCE of D(z_hat)", "{:.3f}"),
    ("04_failure_analysis", ("eps_best",), "best clamp margin on real images", "{:g}"),
    ("05_inverse_methods", ("best_realizable", "float64", "method"), "best method on realizable float64 images", "{}"),
    ("05_inverse_methods", ("best_realizable", "float64", "success_1e-6"), "its share recovered to 1e-6", "{:.3f}"),
]


def _lookup(metrics: dict, keys: tuple[str, ...]):
    for k in keys:
        if not isinstance(metrics, dict) or k not in metrics:
            return None
        metrics = metrics[k]
    return metrics


def _formatted(value, fmt: str) -> str:
    """fmt applied to value; a value it does not fit ("nan", "inf": how metrics JSON holds them) as is."""
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _read_notebook(path: Path):
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError, nbformat.ValidationError) as exc:  # ValueError: not JSON, truncated
        raise BrokenRun(f"{path.name} is not a readable notebook ({type(exc).__name__})") from None


def _read_metrics(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BrokenRun(f"metrics/{path.name} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(values, dict):
        raise BrokenRun(f"metrics/{path.name} holds no JSON object")
    return values


STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def _shared_styles(body: str, folder: Path) -> str:
    """The page with nbconvert's styles in <head> (about 260 kB, the same on every page) moved into one
    stylesheet beside the run folders, named by its content, and linked: stored once for all pages.
    Styles inside the notebook's outputs (pandas tables) stay where they are."""
    head, end, rest = body.partition("</head>")
    css = "\n".join(STYLE_BLOCK.findall(head))
    if not css or not end:
        return body
    sheet = folder.parent / f"notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    if not sheet.is_file():
        atomic_write(sheet, css)
    before, _, after = head.partition("<style")  # the link where the first style was, the others removed
    link = f'<link rel="stylesheet" href="../{sheet.name}">\n'
    return before + link + STYLE_BLOCK.sub("", "<style" + after) + end + rest


def _linked(nb: Path):
    """The executed notebook, its saved figures linked instead of embedded (rewritten when any was)."""
    import nbformat

    notebook = _read_notebook(nb)
    if link_saved_figures(notebook, nb.parent):
        atomic_write(nb, nbformat.writes(notebook))
    return notebook


def render_notebooks(run_dir: Path) -> list[Path]:
    """Write NN_name.html beside each executed NN_name.ipynb (re-rendered when older). Figures are
    stored once: the notebook and its page link the PNGs under figures/, and the pages share one
    stylesheet."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    pages = []
    for nb in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        page = nb.with_suffix(".html")
        if not page.exists() or page.stat().st_mtime < nb.stat().st_mtime:
            body, _ = exporter.from_notebook_node(_linked(nb))
            atomic_write(page, _shared_styles(body, run_dir))
        pages.append(page)
    return pages


# The figures a reader looks at first, per run (those the run has are shown as thumbnails).
KEY_FIGURES = ("real_inversion_grid.png", "preactivations_prior.png", "methods_grid.png", "quality_vs_time.png")
STYLE = ("<style>body{font-family:sans-serif;max-width:75em;margin:1em auto;padding:0 1em;line-height:1.4}"
         "table.summary{border-collapse:collapse;font-size:85%}table.summary td,table.summary th{border:1px solid #ccc;"
         "padding:2px 5px;text-align:right;vertical-align:top}td.missing{color:#999}"
         "div.wide{overflow-x:auto}img.thumb{height:200px;max-width:380px;object-fit:contain;border:1px solid #ddd;"
         "margin:2px}</style>")


def _href(path: Path, reports: Path) -> str:
    """`path` relative to reports/ (where index.html lives), escaped for an attribute: the page works from a clone."""
    return html.escape(path.relative_to(reports).as_posix(), quote=True)


def _notebook_links(pages: list[Path], reports: Path) -> str:
    """Each executed notebook: its rendered page and the .ipynb itself."""
    return " · ".join(f'<a href="{_href(p, reports)}">{html.escape(p.stem)}</a> '
                      f'(<a href="{_href(p.with_suffix(".ipynb"), reports)}">.ipynb</a>)' for p in pages)


def _thumbnails(figures: list[Path], reports: Path) -> str:
    return "".join(f'<a href="{_href(f, reports)}"><img class="thumb" src="{_href(f, reports)}" '
                   f'alt="{html.escape(f.stem)}" title="{html.escape(f.stem)}"></a>'
                   for f in figures if f.is_file())


def _run_section(run_dir: Path, reports: Path) -> str | None:
    """The run's heading, links, headline numbers and key figures; None when it has no executed notebook."""
    pages = render_notebooks(run_dir)
    if not pages:
        return None
    metrics = {}
    numbers = []
    for name, keys, label, fmt in HEADLINES:
        f = run_dir / "metrics" / f"{name}.json"
        if name not in metrics:
            metrics[name] = _read_metrics(f) if f.is_file() else {}
        value = _lookup(metrics[name], keys)
        if value is not None:
            numbers.append(f"<li>{html.escape(label)}: {html.escape(_formatted(value, fmt))}</li>")
    figures = _thumbnails([run_dir / "figures" / name for name in KEY_FIGURES], reports)
    return (f"<h2>{html.escape(run_dir.name)}</h2><p>{_notebook_links(pages, reports)}</p><ul>{''.join(numbers)}</ul>"
            + (f"<p>{figures}</p>" if figures else ""))


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _inline(text: str) -> str:
    """Plain text with `code` spans, as HTML."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _commit(folder: Path) -> str:
    """The checkout's short commit (git rev-parse --short HEAD), or "unknown"."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def _summary_section(reports: Path, table) -> str:
    """The table across runs, and the summary notebook's links and figure when it has been executed."""
    from ..study import summary

    folder = reports / summary.SUMMARY_DIR
    pages = render_notebooks(folder) if folder.is_dir() else []
    if pages:
        figure = _thumbnails(sorted((folder / "figures").glob("*.png")), reports)
        notebook = f"<p>{_notebook_links(pages, reports)}</p>" + (f"<p>{figure}</p>" if figure else "")
    else:
        notebook = ("<p>The summary notebook has not been executed yet (<code>inverse-vae summary</code>, or "
                    "<code>./run_all.sh --all</code>).</p>")
    missing = f"<p>Not run yet: {html.escape(', '.join(table.not_run))}.</p>" if table.not_run else ""
    return (f"<h2>The runs side by side</h2><div class=wide>{summary.table_html(table)}</div>{missing}"
            f"<ul>{''.join(f'<li>{_inline(line)}</li>' for line in summary.design_lines(table) + summary.seed_lines(table))}"
            f"</ul>{notebook}")


def _run_dirs(reports: Path) -> list[Path]:
    """The run folders under reports/: not the summary's, the scratch root or hidden ones (.old)."""
    from ..study.summary import SUMMARY_DIR

    return sorted(p for p in reports.iterdir()
                  if p.is_dir() and p.name not in (SUMMARY_DIR, "scratch") and not p.name.startswith("."))


def write_index(reports: Path, warn=_warn, params_dir: Path | None = None) -> Path:
    """Render every run under `reports` and write reports/index.html: the question and its answer from
    the default run, the table across runs (the family of params_dir, default reports/../params, plus
    any other run folder; a run not executed is shown as not run), the summary notebook, then each run's
    links, numbers and key figures, and the commit and date. A broken run is skipped with
    warn("warning: ..."). Raises StudyError when `reports` is not a folder."""
    from ..study import summary

    reports = Path(reports)
    if not reports.is_dir():
        raise StudyError(f"reports folder {reports} not found: run ./run_all.sh (or run-notebooks) first")
    sections = {}
    for run_dir in _run_dirs(reports):
        try:
            row = _run_section(run_dir, reports)
        except StudyError as exc:  # BrokenRun, or a page that could not be written (WriteError)
            warn(f"warning: {run_dir.name} left out of the index: {exc}")
            continue
        if row is not None:
            sections[run_dir.name] = row
    params_dir = Path(params_dir) if params_dir is not None else reports.resolve().parent / "params"
    family = summary.family(params_dir) if params_dir.is_dir() else []
    table = summary.cross_run_table(reports, family + [n for n in sections if n not in family])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return atomic_write(reports / "index.html",
                        f"<!doctype html><meta charset='utf-8'><title>Inverse-VAE study: reports</title>{STYLE}"
                        f"<h1>{html.escape(summary.QUESTION)}</h1><p>{_inline(summary.answer(table))}</p>"
                        + _summary_section(reports, table) + "".join(sections.values())
                        + f"<hr><p>Commit {html.escape(_commit(reports))} · rendered {stamp}</p>\n")
