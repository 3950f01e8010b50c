"""Command line: check-params, fetch-data, run-notebooks, make-goldens, summary and index.

The same as `inverse-vae ...` (the console script the package installs) and `python -m inverse_vae ...`.

Bad input, and a file that cannot be written or read (full disk, read-only folder), end with one
line on stderr and exit code 2; warnings (a run left out of the index) are lines on stderr too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import StudyError


def _check_params(args) -> None:
    from .runs.checks import load_checked_config

    for path in args.files:
        load_checked_config(path)
        print(f"{path}: ok")


def _fetch_data(args) -> None:
    from .core.data import fetch_mnist

    raw = fetch_mnist(args.root)
    print(f"MNIST ready in {raw}")


def _run_notebooks(args) -> None:
    from .runs.notebooks import run_study

    only = args.only.split(",") if args.only else None
    run_study(args.params, only=only, reports_root=args.reports_root, fresh=args.fresh)


def _make_goldens(args) -> None:
    from .runs.notebooks import make_goldens

    make_goldens()


def _summary(args) -> None:
    from .runs.notebooks import run_summary

    print(f"wrote {run_summary(args.reports_root)}")


def _index(args) -> None:
    from .runs.report_index import write_index

    print(f"wrote {write_index(Path(args.reports_root))}")


def main(argv=None) -> int:
    prog = "inverse-vae" if Path(sys.argv[0]).name == "inverse-vae" else "python -m inverse_vae"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-params", help="validate params files; exit 2 naming the first bad key")
    check.add_argument("files", nargs="+")
    check.set_defaults(run=_check_params)
    fetch = sub.add_parser("fetch-data", help="make sure the four MNIST IDX files are in ROOT/MNIST/raw, verified")
    fetch.add_argument("--root", default="data")
    fetch.set_defaults(run=_fetch_data)
    nbs = sub.add_parser("run-notebooks", help="validate the params, then execute the notebooks into reports/<run>/")
    nbs.add_argument("params", nargs="+", help="params files; each run goes to REPORTS_ROOT/<file stem>/")
    nbs.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 01,02")
    nbs.add_argument("--reports-root", default="reports")
    nbs.add_argument("--fresh", action="store_true",
                     help="first move each run's earlier outputs into REPORTS_ROOT/.old/<run>-<time>/ (nothing is "
                          "deleted), then run from nothing")
    nbs.set_defaults(run=_run_notebooks)
    goldens = sub.add_parser("make-goldens", help="re-execute the notebooks on params/smoke.yaml into tests/goldens/")
    goldens.set_defaults(run=_make_goldens)
    summary = sub.add_parser("summary", help="execute notebooks/99_summary.ipynb once over every run's metrics "
                                             "into REPORTS_ROOT/summary/ (the table across runs)")
    summary.add_argument("--reports-root", default="reports")
    summary.set_defaults(run=_summary)
    index = sub.add_parser("index", help="render the executed notebooks to HTML and write reports/index.html")
    index.add_argument("--reports-root", default="reports")
    index.set_defaults(run=_index)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: one line rather than a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
