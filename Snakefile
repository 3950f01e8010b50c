# The study's workflow: a rule per notebook per run (papermill, through `python -m inverse_vae execute`),
# the summary across runs and the report pages. ./run_all.sh drives it (see its --help); by hand:
#   .venv/bin/snakemake -n --config runs=default          what would run, and why
# Params decide what re-runs (rule params below; runs/workflow.py says which keys each notebook reads);
# file times do not (the profile's rerun-triggers), so a fresh clone's committed reports count as done.
import sys
from pathlib import Path

from inverse_vae.core.config import family, run_name
from inverse_vae.constants import NOTEBOOKS
from inverse_vae.errors import StudyError
from inverse_vae.runs import workflow as wf
from inverse_vae.runs.run import load_checked_config

ROOT = Path(workflow.basedir)
REPORTS = config.get("reports", "reports")
THREADS = int(config.get("threads", 2))  # each notebook's torch threads: numbers depend on it, keep it fixed
PYTHON = sys.executable
FAMILY = family(ROOT / "params")
PARAMS = [ROOT / p for p in str(config["runs"]).split(",")] if config.get("runs") else FAMILY
try:  # a refusal is one line (./run_all.sh checks the params files it is given before; --all's are checked here)
    CONFIGS = {run_name(p): (p, load_checked_config(p, ROOT)) for p in PARAMS}
except StudyError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
GPU = 1 if config.get("gpu") else 0  # rules of runs on a GPU ask for it: two never share one unless asked


def rule_name(run, notebook):
    return f"{notebook}__{run}".replace("-", "_")


for run, (params_file, cfg) in CONFIGS.items():
    for notebook in NOTEBOOKS:
        rule:
            name: rule_name(run, notebook)
            input: wf.inputs(cfg, params_file, notebook, REPORTS, ROOT)
            output: **wf.outputs(cfg, run, notebook, REPORTS)
            params:
                depends_on=wf.depends_on(cfg, notebook, ROOT),
                notebook=f"notebooks/{notebook}.ipynb",  # the shell below is formatted when the job runs:
                params_file=params_file.relative_to(ROOT),  # its values come from here, not the loop
            threads: THREADS
            resources: gpu=GPU if cfg.device in ("cuda", "auto") else 0
            log: f"{REPORTS}/.logs/{run}/{notebook}.log"
            shell: f"OMP_NUM_THREADS={{threads}} {PYTHON} -m inverse_vae execute {{params.notebook}} {{params.params_file}} "
                   f"--reports-root {REPORTS} > {{log}} 2>&1"


rule summary:
    input: [wf.outputs(cfg, run, nb, REPORTS)["metrics"] for run, (_, cfg) in CONFIGS.items() for nb in NOTEBOOKS]
    output: notebook=f"{REPORTS}/summary/99_summary.ipynb", metrics=f"{REPORTS}/summary/metrics/99_summary.json"
    params: code=wf.code_digest(ROOT / "notebooks/99_summary.ipynb")
    threads: THREADS
    log: f"{REPORTS}/.logs/summary.log"
    shell: f"OMP_NUM_THREADS={{threads}} {PYTHON} -m inverse_vae execute notebooks/99_summary.ipynb params/default.yaml "
           f"--reports-root {REPORTS} > {{log}} 2>&1"


rule explore:
    """The explorer's fixed examples, executed: the report shows them as images (the controls need JupyterLab)."""
    input: [wf.outputs(cfg, run, "01_train", REPORTS)["metrics"] for run, (_, cfg) in CONFIGS.items()]
    output: notebook=f"{REPORTS}/explore/98_explore.ipynb"
    params: code=wf.code_digest(ROOT / "notebooks/98_explore.ipynb")
    threads: THREADS
    log: f"{REPORTS}/.logs/explore.log"
    shell: f"OMP_NUM_THREADS={{threads}} {PYTHON} -m inverse_vae execute notebooks/98_explore.ipynb params/default.yaml "
           f"--reports-root {REPORTS} > {{log}} 2>&1"


def runs_with(wildcards):
    """The runs a page of this notebook links to (its navigation lists every run that has one): a run added
    re-renders the other runs' pages of its notebooks."""
    there = {p.parent.name for p in Path(REPORTS).glob(f"*/{wildcards.notebook}.ipynb")}
    return ",".join(sorted(there | (set(CONFIGS) if wildcards.notebook in NOTEBOOKS else set())))


rule page:
    input: f"{REPORTS}/{{folder}}/{{notebook}}.ipynb"
    output: f"{REPORTS}/{{folder}}/{{notebook}}.html"
    wildcard_constraints: folder="[A-Za-z0-9_-]+", notebook=r"\d\d_[a-z_]+"
    params: runs=runs_with
    shell: f"{PYTHON} -m inverse_vae page {{input}}"


def pages(wildcards=None):
    """Every executed notebook of the runs selected, and of the other runs already there."""
    there = {p for p in Path(REPORTS).glob("*/[0-9][0-9]_*.ipynb") if p.parent.name not in ("scratch",)}
    made = {Path(wf.outputs(cfg, run, nb, REPORTS)["notebook"]) for run, (_, cfg) in CONFIGS.items() for nb in NOTEBOOKS}
    return sorted(str(p.with_suffix(".html")) for p in there | made)


rule index:
    input: pages
    output: f"{REPORTS}/index.html"
    shell: f"{PYTHON} -m inverse_vae index --reports-root {REPORTS}"


rule run:
    """The runs selected (every notebook), and the pages."""
    input: pages, f"{REPORTS}/index.html"
    default_target: True


rule all:
    """The whole family, the summary across runs, and the pages."""
    input: pages, f"{REPORTS}/summary/99_summary.html", f"{REPORTS}/explore/98_explore.html", f"{REPORTS}/index.html"
