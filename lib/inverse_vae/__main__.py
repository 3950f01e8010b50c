"""Command line: check-params, fetch-data, jupyter-setup, and what the workflow's rules run (execute, page, index).

The same as `inverse-vae ...`. Bad input, and a file that cannot be written or read, end with one line on
stderr and exit code 2; an interrupt (Ctrl-C) with one line and 130. ./run_all.sh is the usual entry.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.data import fetch_mnist
from .errors import StudyError
from .runs import jupyter, workflow
from .runs.execute import execute
from .runs.run import load_checked_config, project_root
from .runs.site import render_notebook, write_index


def _check_params(args) -> None:
    for path in args.files:
        load_checked_config(path, project_root())
        print(f"{path}: ok")


def _fetch_data(args) -> None:
    print(f"MNIST ready in {fetch_mnist(args.root)}")


def _execute(args) -> None:
    execute(args.notebook, args.params, args.reports_root)


def _page(args) -> None:
    print(f"wrote {render_notebook(Path(args.notebook))}")


def _index(args) -> None:
    print(f"wrote {write_index(Path(args.reports_root))}")


def _jupyter_setup(args) -> None:
    for path in jupyter.setup():
        print(f"installed {path}")


def _stale(args) -> None:
    runs = {Path(p).stem.replace("-", "_") for p in args.runs.split(",")} if args.runs else None
    print(" ".join(r for r in workflow.stale(project_root(), args.reports_root) if runs is None or r.split("__")[1] in runs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="inverse-vae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-params", help="validate params files in full; exit 2 naming the first bad key")
    check.add_argument("files", nargs="+")
    check.set_defaults(run=_check_params)
    fetch = sub.add_parser("fetch-data", help="make sure the four MNIST IDX files are in ROOT/MNIST/raw, verified")
    fetch.add_argument("--root", default="data")
    fetch.set_defaults(run=_fetch_data)
    setup = sub.add_parser("jupyter-setup", help="install the kernel inverse-vae and the save hook that keeps "
                           "notebooks/ without outputs, into this Python's environment")
    setup.set_defaults(run=_jupyter_setup)
    execute = sub.add_parser("execute", help="run one notebook with a params file into REPORTS_ROOT/<run>/ (papermill)")
    execute.add_argument("notebook")
    execute.add_argument("params")
    execute.add_argument("--reports-root", default="reports")
    execute.set_defaults(run=_execute)
    page = sub.add_parser("page", help="render an executed notebook as its HTML page beside it")
    page.add_argument("notebook")
    page.set_defaults(run=_page)
    index = sub.add_parser("index", help="write REPORTS_ROOT/index.html, the landing page")
    index.add_argument("--reports-root", default="reports")
    index.set_defaults(run=_index)
    stale = sub.add_parser("stale", help="the rules whose executed notebook is not what its notebook makes now")
    stale.add_argument("--reports-root", default="reports")
    stale.add_argument("--runs", default="", help="comma-separated params files (default: every run there)")
    stale.set_defaults(run=_stale)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: one line rather than a traceback
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every file is whole (written atomically); run again to go on", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
