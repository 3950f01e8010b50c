"""Command line (`inverse-vae`): check-params, fetch-data, jupyter-setup, compact, and what the workflow's rules run.

Bad input, and a file that cannot be written or read, end with one line on stderr and exit code 2; an
interrupt (Ctrl-C) with one line and 130. ./run_all.sh is the usual entry.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.checkpoints import write_compact_checkpoint
from .core.data import fetch_mnist
from .errors import StudyError
from .runs import jupyter, workflow
from .runs.execute import execute
from .runs.run import load_checked_config, open_run, project_root
from .runs.site import render_notebook, write_index


def _check_params(files) -> None:
    for path in files:
        load_checked_config(path, project_root())
        print(f"{path}: ok")


def _compact(params_file, reports_root) -> str:
    run = open_run(params_file, reports_root)
    return f"wrote {run.shown(write_compact_checkpoint(run.model_file, config=run.config))}"


REPORTS = ("--reports-root", {"default": "reports"})
# name: (help, its arguments, what it does with them; a text it returns is printed)
COMMANDS = {
    "check-params": ("validate params files in full; exit 2 naming the first bad key", [("files", {"nargs": "+"})],
                     _check_params),
    "fetch-data": ("make sure the four MNIST IDX files are in ROOT/MNIST/raw, verified", [("--root", {"default": "data"})],
                   lambda root: f"MNIST ready in {fetch_mnist(root)}"),
    "jupyter-setup": ("install the kernel inverse-vae and the save hook that keeps notebooks/ without outputs, into this "
                      "Python's environment", [], lambda: "\n".join(f"installed {path}" for path in jupyter.setup())),
    "compact": ("rewrite a run's final checkpoint without optimizer state (a third of its size), as committed runs keep "
                "it; training cannot go past it afterwards", [("params_file", {}), REPORTS], _compact),
    "execute": ("run one notebook with a params file into REPORTS_ROOT/<run>/ (papermill)",
                [("notebook", {}), ("params_file", {}), REPORTS], execute),
    "page": ("render an executed notebook as its HTML page beside it", [("path", {"metavar": "notebook", "type": Path})],
             lambda path: f"wrote {render_notebook(path)}"),
    "index": ("write REPORTS_ROOT/index.html, the landing page", [REPORTS],
              lambda reports_root: f"wrote {write_index(reports_root)}"),
    "stale": ("the rules whose executed notebook is not what its notebook makes now",
              [REPORTS, ("--runs", {"default": "", "help": "comma-separated params files (default: every run there)"})],
              lambda reports_root, runs: " ".join(workflow.stale(project_root(), reports_root, runs))),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="inverse-vae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, arguments, _) in COMMANDS.items():
        command = sub.add_parser(name, help=text)
        for flag, options in arguments:
            command.add_argument(flag, **options)
    args = vars(parser.parse_args(argv))
    try:
        said = COMMANDS[args.pop("command")][2](**args)
        if isinstance(said, str):
            print(said)
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
