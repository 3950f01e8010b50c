"""Notebook 03 interactively against in batch: the same notebook, the same scratch run, the same machine.

    .venv/bin/python bench/lab_time.py [--params params/default.yaml] [--notebook 03_invert] [--repeats 2]

A reader's copy of the notebook with the given params (in the git-ignored reports/scratch/notebooks/) runs
on that params' scratch run, which starts from the committed run's final model: once through papermill
(batch: its recorded duration, the kernel's start included) and once in JupyterLab driven by headless
Chromium (Run > Run All Cells until every cell has its count; the kernel already started), after one
uncounted batch run that fills the scratch run's caches for both. Issue #24 asks
for the interactive time within the batch time plus 30%. Run it alone: another job on the cores slows both.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))

from lab import browser_page, cell_errors, jupyterlab, open_notebook, reader_copy, run_all_cells  # noqa: E402


def batch_seconds(copy: Path) -> float:
    out = copy.with_name(copy.stem + "_batch.ipynb")
    papermill.execute_notebook(copy, out, kernel_name="inverse-vae", cwd=str(copy.parent), progress_bar=False)
    return float(nbformat.read(out, as_version=4).metadata["papermill"]["duration"])


def lab_seconds(copy: Path, chromium: str) -> float:
    with jupyterlab(ROOT) as url, browser_page(chromium) as page:
        open_notebook(page, url, copy.relative_to(ROOT).as_posix())
        seconds = run_all_cells(page, 1800)
        errors = cell_errors(page)
    if errors:
        raise SystemExit(f"{copy}: a cell failed in JupyterLab: {errors[0][:300]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--notebook", default="03_invert")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    copy = reader_copy(args.notebook, args.params)
    batch_seconds(copy)  # warm-up, not counted: the scratch run's caches (probe, t-SNE) exist for both ways after it
    batch, lab = [], []
    for i in range(args.repeats):
        batch.append(batch_seconds(copy))
        lab.append(lab_seconds(copy, chromium))
        print(f"repeat {i + 1}: batch (papermill) {batch[-1]:7.1f} s   JupyterLab {lab[-1]:7.1f} s", flush=True)
    b, i = statistics.median(batch), statistics.median(lab)
    print(f"{args.notebook} on the {Path(args.params).stem} scratch run, median of {args.repeats}: "
          f"batch {b:.1f} s, JupyterLab {i:.1f} s, ratio {i / b:.2f} (target at most 1.30)")


if __name__ == "__main__":
    main()
