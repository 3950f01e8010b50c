"""The study's command line: check-params, fetch-data, compact (`inverse-vae` adds the workflow's: workflow/__main__.py).

Bad input, and a file that cannot be written or read, end with one line on stderr and exit code 2; an
interrupt (Ctrl-C) with one line and 130. ./run_all.sh is the usual entry.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.checkpoints import checkpoint_layout, load_checkpoint, write_compact_checkpoint
from .core.config import run_name
from .core.data import fetch_mnist
from .errors import ParamsError, StudyError
from .runs.run import load_checked_config, open_run, project_root


def _check_params(files) -> None:
    """Each file in full, and as the workflow takes it: inside the project (its reports name it relative to it),
    and no two of them one run or one set of rules."""
    root, names = project_root(), {}
    for path in files:
        load_checked_config(path, root)
        if not Path(path).resolve().is_relative_to(root):
            raise ParamsError(f"{path}: outside the project {root}: ./run_all.sh and the workflow run a params file of the "
                              f"project only; copy it into params/")
        rule = run_name(path).replace("-", "_")  # the workflow's rule names spell '-' as '_'
        if rule in names and names[rule].resolve() != Path(path).resolve():
            raise ParamsError(f"{path}: its run name {run_name(path)!r} and {names[rule]}'s give the same run folder or "
                              f"workflow rules ('-' and '_' are one there): rename one of them")
        names[rule] = Path(path)
        print(f"{path}: ok")


def _compact(params_file, reports_root) -> str:
    run = open_run(params_file, reports_root)
    shown, before = run.shown(run.model_file), load_checkpoint(run.model_file)
    write_compact_checkpoint(run.model_file, config=run.config)
    said = [f"{shown}: already compact, left as it is" if checkpoint_layout(before) == "compact" else f"wrote {shown}"]
    if "params_fingerprint" not in before:
        said.append(f"note: {shown} has no params fingerprint (the original train.py's?) and was given none: nothing "
                    f"shows it was trained with {params_file}, so later checks cannot tell other params' apart")
    return "\n".join(said)


REPORTS = ("--reports-root", {"default": "reports"})
# name: (help, its arguments, what it does with them; a text it returns is printed)
COMMANDS = {
    "check-params": ("validate params files in full; exit 2 naming the first bad key", [("files", {"nargs": "+"})],
                     _check_params),
    "fetch-data": ("make sure the four MNIST IDX files are in ROOT/MNIST/raw, verified", [("--root", {"default": "data"})],
                   lambda root: f"MNIST ready in {fetch_mnist(root)}"),
    "compact": ("rewrite a run's final checkpoint without optimizer state (a third of its size), as committed runs keep "
                "it; training cannot go past it afterwards", [("params_file", {}), REPORTS], _compact),
}


def main(argv=None, commands=COMMANDS, description: str | None = None) -> int:
    """Run one of `commands` (a table shaped as COMMANDS): the workflow's command line passes the study's and its own."""
    parser = argparse.ArgumentParser(prog="inverse-vae", description=description or __doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, arguments, _) in commands.items():
        command = sub.add_parser(name, help=text)
        for flag, options in arguments:
            command.add_argument(flag, **options)
    args = vars(parser.parse_args(argv))
    try:
        said = commands[args.pop("command")][2](**args)
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
