"""reports/index.html: one page linking every run's rendered notebooks and headline numbers.

A broken run (a notebook or metrics file that cannot be read, a page that cannot be written) is
left out with a warning line; the others are still rendered.
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from ..core.files import atomic_write
from ..errors import StudyError


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


def render_notebooks(run_dir: Path) -> list[Path]:
    """Write NN_name.html beside each executed NN_name.ipynb (re-rendered when older)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    pages = []
    for nb in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        page = nb.with_suffix(".html")
        if not page.exists() or page.stat().st_mtime < nb.stat().st_mtime:
            body, _ = exporter.from_notebook_node(_read_notebook(nb))
            atomic_write(page, body)
        pages.append(page)
    return pages


def _run_section(run_dir: Path, reports: Path) -> str | None:
    """The run's heading, links and headline numbers; None when it has no executed notebook."""
    pages = render_notebooks(run_dir)
    if not pages:
        return None
    links = " · ".join(f'<a href="{html.escape(str(p.relative_to(reports)))}">{html.escape(p.stem)}</a>'
                       for p in pages)
    metrics = {}
    numbers = []
    for name, keys, label, fmt in HEADLINES:
        f = run_dir / "metrics" / f"{name}.json"
        if name not in metrics:
            metrics[name] = _read_metrics(f) if f.is_file() else {}
        value = _lookup(metrics[name], keys)
        if value is not None:
            numbers.append(f"<li>{html.escape(label)}: {html.escape(_formatted(value, fmt))}</li>")
    return f"<h2>{html.escape(run_dir.name)}</h2><p>{links}</p><ul>{''.join(numbers)}</ul>"


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def write_index(reports: Path, warn=_warn) -> Path:
    """Render every run under `reports` and write reports/index.html; a broken run is skipped with
    warn("warning: ..."). Raises StudyError when `reports` is not a folder."""
    reports = Path(reports)
    if not reports.is_dir():
        raise StudyError(f"reports folder {reports} not found: run ./run_all.sh (or run-notebooks) first")
    rows = []
    for run_dir in sorted(p for p in reports.iterdir() if p.is_dir()):
        try:
            row = _run_section(run_dir, reports)
        except StudyError as exc:  # BrokenRun, or a page that could not be written (WriteError)
            warn(f"warning: {run_dir.name} left out of the index: {exc}")
            continue
        if row is not None:
            rows.append(row)
    return atomic_write(reports / "index.html",
                        "<!doctype html><meta charset='utf-8'><title>Inverse-VAE study: reports</title>"
                        "<h1>Inverse-VAE study: reports</h1>" + "".join(rows) + "\n")
