"""Command line (`inverse-vae`): the study's commands and the workflow's (plan, execute, page, index, jupyter-setup).

The study's (check-params, fetch-data, compact) are lib/inverse_vae/__main__.py's; these run and publish it. Errors
end as the study's do: one line, exit code 2. ./run_all.sh is the usual entry.
"""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

from inverse_vae.__main__ import COMMANDS, REPORTS
from inverse_vae.__main__ import main as study_main
from inverse_vae.runs.run import project_root

from . import plan as workflow


def _plan(reports_root: str, runs: str, all: bool, force: str, fresh: bool, receipts: Path | None) -> str:
    """What will run and why, one line each, on stdout (nothing: all up to date); the receipts written; a note on
    stderr naming the runs made off the pinned arithmetic path."""
    root, selected = project_root(), [p for p in runs.split(",") if p]
    study = workflow.Study.of(root, reports_root, selected, checked=False)  # run_all.sh checked them; Snakemake does
    done = workflow.plan(study, [Path(p).stem for p in selected], everything=all,
                         force=[n for n in force.split(",") if n], fresh=fresh)
    workflow.write_receipts(done, receipts or root / reports_root / ".receipts")
    off = workflow.off_path(root, reports_root, runs)
    if off:
        print(f"note: {off}", file=sys.stderr)
    return workflow.said(done)


def _later(module: str, name: str, said=None):
    """A command's function, imported when that command runs: nbformat, papermill and nbconvert take seconds to
    import (jsonschema builds its grammars), which `plan`, run before every ./run_all.sh, does not need. `said`
    turns what it returns into the line printed."""
    def run(**args):
        done = getattr(import_module(module, __package__), name)(**args)
        return done if said is None else said(done)
    return run


# name: (help, its arguments, what it does with them; a text it returns is printed), as the study's COMMANDS
WORKFLOW = {
    "jupyter-setup": ("install the kernel inverse-vae and the save hook that keeps notebooks/ without outputs, into this "
                      "Python's environment", [], _later(".jupyter_setup", "setup",
                                                         lambda paths: "\n".join(f"installed {p}" for p in paths))),
    "execute": ("run one notebook with a params file into REPORTS_ROOT/<run>/ (papermill)",
                [("notebook", {}), ("params_file", {}), REPORTS], _later(".execute", "execute")),
    "page": ("render an executed notebook as its HTML page beside it", [("path", {"metavar": "notebook", "type": Path})],
             _later(".pages", "render_notebook", "wrote {}".format)),
    "index": ("write REPORTS_ROOT/index.html, the landing page", [REPORTS], _later(".pages", "write_index",
                                                                                   "wrote {}".format)),
    "plan": ("say what is out of date and why (one line each; nothing: all up to date), from what each executed notebook "
             "records, and write the receipts the Snakefile schedules from",
             [REPORTS, ("--runs", {"default": "", "help": "comma-separated params files: their pages are the targets"}),
              ("--all", {"action": "store_true", "help": "the whole family, the summary and the explorer"}),
              ("--force", {"default": "", "help": "notebook numbers to re-run all the same, e.g. 03,05 (98, 99)"}),
              ("--fresh", {"action": "store_true", "help": "the runs' earlier outputs are being set aside"}),
              ("--receipts", {"type": Path, "default": None, "help": "default REPORTS_ROOT/.receipts"})], _plan),
}


def main(argv=None) -> int:
    return study_main(argv, {**COMMANDS, **WORKFLOW}, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
