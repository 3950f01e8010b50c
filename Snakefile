# The study's workflow: a notebook rule for every run (papermill, through `python -m inverse_vae execute`), the
# summary and the explorer across runs, the report pages and the index. ./run_all.sh drives it (see its --help).
# What is up to date is decided by what each executed notebook records (lib/inverse_vae/runs/workflow.py), through
# receipts: `inverse-vae plan` writes one for each result up to date, and a rule's only output is its receipt, so
# Snakemake runs what has none and never deletes a result. By hand:
#   source .venv/bin/activate                         the rules run `python` from PATH
#   inverse-vae plan --runs params/default.yaml       what is out of date, and why (writes the receipts)
#   snakemake -n --config runs=params/default.yaml    what would run
import shlex
import shutil
import sys
from pathlib import Path

from inverse_vae.constants import ACROSS_RUNS, NOTEBOOKS
from inverse_vae.errors import StudyError
from inverse_vae.runs import workflow as wf

ROOT = Path(workflow.basedir)
REPORTS = config.get("reports", "reports")
RECEIPTS = config.get("receipts", f"{REPORTS}/.receipts")
THREADS = int(config.get("threads", 2))  # each notebook's torch threads: numbers depend on it, keep it fixed
PYTHON = "python"  # from PATH, never an absolute path: a remote job or a container has its own (./run_all.sh puts .venv's first)
_python = shutil.which(PYTHON)
if _python is None or Path(_python).parent.parent.resolve() != Path(sys.prefix).resolve():  # another environment's
    print(f"error: the rules run `python` from PATH, which is {_python or 'missing'}, not this Snakemake's interpreter "
          f"{sys.executable}: activate the environment first (source .venv/bin/activate), or use ./run_all.sh", file=sys.stderr)
    sys.exit(2)
SELECTED = [p for p in str(config.get("runs", "")).split(",") if p]
try:  # a refusal is one line (./run_all.sh checks the params files it is given before; the family's are checked here)
    STUDY = wf.Study.of(ROOT, REPORTS, SELECTED)
except StudyError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
GPU = 1 if config.get("gpu") else 0  # rules of runs on a GPU ask for it: two never share one unless asked
PLAN = wf.graph(STUDY, [Path(p).stem for p in SELECTED], everything=not SELECTED)  # `inverse-vae plan` wrote the receipts


def receipt(key):
    return f"{RECEIPTS}/{key}"


def waits_for(wildcards, kind="done"):
    """The receipts of what this result reads (ancient: only whether they exist counts, never their times)."""
    return [ancient(receipt(k)) for k in PLAN.wanted.get(wf.receipt(wildcards.folder, wildcards.stem, kind), ())]


wildcard_constraints:
    folder="|".join(list(STUDY.configs) + list(ACROSS_RUNS.values())),
    stem=r"\d\d_[a-z_]+",


rule notebook:
    """Run one notebook of one run (or the summary, or the explorer) into reports/<folder>/."""
    input: waits_for
    output: receipt("{folder}/{stem}.done")
    params:
        params_file=lambda w: shlex.quote(str(STUDY.configs[w.folder][0].relative_to(ROOT))) if w.folder in STUDY.configs
                              else "params/default.yaml",
        reports=shlex.quote(REPORTS),
    threads: THREADS
    resources: gpu=lambda w: GPU if w.folder in STUDY.configs and STUDY.configs[w.folder][1].device in ("cuda", "auto") else 0
    log: f"{REPORTS}/.logs/{{folder}}/{{stem}}.log"
    benchmark: f"{REPORTS}/.logs/{{folder}}/{{stem}}.benchmark.tsv"  # time and peak memory: what a cluster job should ask
    shell: f"OMP_NUM_THREADS={{threads}} {PYTHON} -m inverse_vae execute notebooks/{{wildcards.stem}}.ipynb "
           f"{{params.params_file}} --reports-root {{params.reports}} > {{log:q}} 2>&1 && touch {{output:q}}"


rule model:
    """A run's model is made (by its 01) or unchanged: what 02-05 and the explorer wait for, rather than 01 itself, so that
    01 re-run for its figures alone re-runs nothing that reads the model."""
    input: lambda w: ancient(receipt(wf.receipt(w.folder, "01_train")))
    output: receipt("{folder}/model.done")
    log: f"{REPORTS}/.logs/{{folder}}/model.log"
    shell: "touch {output:q} > {log:q} 2>&1"


rule page:
    """Render an executed notebook as its page."""
    input: lambda w: waits_for(w, "page")
    output: receipt("{folder}/{stem}.page")
    params: notebook=lambda w: shlex.quote(f"{REPORTS}/{w.folder}/{w.stem}.ipynb")
    log: f"{REPORTS}/.logs/{{folder}}/{{stem}}.page.log"
    shell: f"{PYTHON} -m inverse_vae page {{params.notebook}} > {{log:q}} 2>&1 && touch {{output:q}}"


rule index:
    input: [ancient(receipt(k)) for k in PLAN.wanted[wf.INDEX]]
    output: receipt(wf.INDEX)
    params: reports=shlex.quote(REPORTS)
    log: f"{REPORTS}/.logs/index.log"
    shell: f"{PYTHON} -m inverse_vae index --reports-root {{params.reports}} > {{log:q}} 2>&1 && touch {{output:q}}"


rule run:
    """The runs selected (every notebook: `runs=`; none, the whole family, the summary and the explorer), their pages,
    the index."""
    input: [receipt(k) for k in PLAN.targets]
    default_target: True


rule all:
    input: rules.run.input


localrules: model, page, index, run, all
