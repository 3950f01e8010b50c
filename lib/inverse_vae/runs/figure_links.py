"""Each figure of a committed run stored once: the executed notebook links the PNG a cell saved.

A notebook cell that draws a figure saves it with `run.figure("name.png")` and Jupyter also embeds
a copy in the cell's output; the HTML page of the notebook would embed a third. For the notebooks
executed into reports/<run>/ the embedded copy is replaced by a Markdown link to figures/name.png,
which JupyterLab, nbconvert's HTML and a browser all resolve from the notebook's folder. A cell
whose images cannot be paired one to one with files it saved (names built at run time, a figure
shown but not saved, a file missing) keeps its embedded images: nothing is lost, only not shared.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

# run.figure("name.png") (where.figure in the summary notebook), or run.figure(f"name_{part}.png") whose
# one file on disk is found by pattern
SAVED_FIGURE = re.compile(r"""\b(?:run|where)\.figure\(\s*(f?)["']([^"'\\]+\.png)["']\s*\)""")
FIGURES_DIR = "figures"


def _png_outputs(cell) -> list:
    return [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def _saved_file(figures: Path, formatted: str, name: str) -> str | None:
    """The file name the cell saved: `name` itself, or for an f-string the one file its pattern
    matches (None when the file is not there, or the pattern is ambiguous)."""
    if not formatted:
        return name if (figures / name).is_file() else None
    matches = list(figures.glob(re.sub(r"\{[^{}]*\}", "*", name)))
    return matches[0].name if len(matches) == 1 else None


def link_saved_figures(nb, folder: Path) -> int:
    """Replace, in place, each embedded PNG of `nb` (an nbformat notebook that lives in `folder`) by a
    link to the figure file its cell saved, where the cell's PNG outputs and saved names pair one to
    one, in order, and every file exists under folder/figures/. Returns how many were linked."""
    linked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        images = _png_outputs(cell)
        names = [_saved_file(folder / FIGURES_DIR, formatted, name) for formatted, name in SAVED_FIGURE.findall(cell.source)]
        if not images or len(names) != len(images) or None in names:
            continue
        for output, name in zip(images, names):
            link = f"{FIGURES_DIR}/{name}"
            output["data"] = {"text/markdown": f"![{Path(name).stem}]({link})",
                              "text/plain": f"<figure: {link}>"}
            output["metadata"] = {}
            linked += 1
    return linked


def linked_notebook_text(text: str, folder: Path) -> str:
    """The executed notebook `text` (JSON) with its saved figures linked; unchanged when none pairs."""
    nb = nbformat.reads(text, as_version=4)
    if not link_saved_figures(nb, folder):
        return text
    return nbformat.writes(nb)
