"""How large lib/ is, by package and by kind of line: the measure DESIGN.md's target (at most 4,500 lines, wc -l
over lib/**/*.py) is stated in, and what those lines are (code, docstrings, comments, blank lines).

    .venv/bin/python tools/lib_size.py            # the table
    .venv/bin/python tools/lib_size.py --json     # the same numbers as JSON
"""
import ast
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "inverse_vae"
TARGET = 4500
KINDS = ("code", "docstring", "comment", "blank")


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def line_kinds(text: str) -> dict[str, int]:
    """Each line of a Python file counted once: a docstring's (blank ones inside it too), else blank, comment or code.
    The four add up to wc -l (a last line without a newline is not counted, as wc does not)."""
    docstrings = _docstring_lines(ast.parse(text))
    counts = dict.fromkeys(KINDS, 0)
    for number, line in enumerate(text.split("\n")[: text.count("\n")], start=1):
        kind = ("docstring" if number in docstrings else "blank" if not line.strip()
                else "comment" if line.lstrip().startswith("#") else "code")
        counts[kind] += 1
    return counts


def sizes(lib: Path = LIB) -> pd.DataFrame:
    """Rows: the packages (top-level modules as "(top)"), then "total"; columns: KINDS and "lines"."""
    rows = {}
    for path in sorted(lib.rglob("*.py")):
        package = path.parent.name if path.parent != lib else "(top)"
        counts = line_kinds(path.read_text(encoding="utf-8"))
        rows[package] = {k: rows.get(package, {}).get(k, 0) + counts[k] for k in KINDS}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(KINDS))
    frame.loc["total"] = frame.sum()
    frame["lines"] = frame[list(KINDS)].sum(axis=1)
    return frame


def main(argv: list[str]) -> int:
    frame = sizes()
    if "--json" in argv:
        print(json.dumps(frame.to_dict(orient="index"), indent=2))
        return 0
    print(frame.to_string())
    total = int(frame.loc["total", "lines"])
    print(f"\nlib/: {total:,} lines (target {TARGET:,}: {'met' if total <= TARGET else f'{total - TARGET:,} over'}); "
          f"code alone {int(frame.loc['total', 'code']):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
