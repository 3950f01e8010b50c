"""reports/index.html: one page linking every run's rendered notebooks and headline numbers."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..core.files import atomic_write

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


def render_notebooks(run_dir: Path) -> list[Path]:
    """Write NN_name.html beside each executed NN_name.ipynb (re-rendered when older)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    pages = []
    for nb in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        page = nb.with_suffix(".html")
        if not page.exists() or page.stat().st_mtime < nb.stat().st_mtime:
            body, _ = exporter.from_notebook_node(nbformat.read(nb, as_version=4))
            atomic_write(page, body)
        pages.append(page)
    return pages


def write_index(reports: Path) -> Path:
    rows = []
    for run_dir in sorted(p for p in reports.iterdir() if p.is_dir()):
        pages = render_notebooks(run_dir)
        if not pages:
            continue
        links = " · ".join(f'<a href="{html.escape(str(p.relative_to(reports)))}">{html.escape(p.stem)}</a>'
                           for p in pages)
        numbers = []
        for name, keys, label, fmt in HEADLINES:
            f = run_dir / "metrics" / f"{name}.json"
            value = _lookup(json.loads(f.read_text()), keys) if f.is_file() else None
            if value is not None:
                numbers.append(f"<li>{html.escape(label)}: {html.escape(fmt.format(value))}</li>")
        rows.append(f"<h2>{html.escape(run_dir.name)}</h2><p>{links}</p><ul>{''.join(numbers)}</ul>")
    return atomic_write(reports / "index.html",
                        "<!doctype html><meta charset='utf-8'><title>Inverse-VAE study: reports</title>"
                        "<h1>Inverse-VAE study: reports</h1>" + "".join(rows) + "\n")
