#!/usr/bin/env bash
# The study in one command: set up if needed, fetch MNIST, then the workflow engine (Snakemake, see the
# workflow/Snakefile) runs what is out of date, a notebook per rule through papermill, and renders the pages.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'EOF'
usage: ./run_all.sh [options] [params/RUN.yaml ...] [-- snakemake options]

  (no params file)      the default run, params/default.yaml -> reports/default/, then the pages
  params/a.yaml ...     those runs (each params/NAME.yaml -> reports/NAME/)
  --all                 the whole family (every params/*.yaml but smoke), the summary, the pages
  -n, --dry-run         say what would run and why, run nothing (writes nothing of the study's: only
                        Snakemake's empty .snakemake/ folders)
  --cores N             run up to N cores' worth of notebooks side by side (default: all cores)
  --threads N           torch threads per notebook (default 2: the committed numbers' setting)
  --force NN[,NN]       re-run these notebooks (e.g. 03,05) of the runs selected, even if up to date
                        (98, 99: the explorer, the summary)
  --fresh               first move the runs' earlier outputs into reports/.old/ (nothing deleted)
  --profile DIR         a Snakemake profile, e.g. profiles/slurm (see docs/workflow.md)
  --setup               set up only (.venv, the Jupyter kernel, the git filter), then stop
  -h, --help            this text, and nothing else

Only what is out of date runs, decided from what each executed notebook records of what it was made from
(its params, code and inputs), so a fresh clone, a pull or another checkout agree: an edited params file
re-runs the notebooks whose results depend on what changed (docs/workflow.md says which keys each reads).
A killed or failed run leaves every earlier result in place. One ./run_all.sh at a time per project.
EOF
}

targets=(run) params=() snake=() cores=$(nproc 2>/dev/null || echo 2) threads=2 fresh=0 force="" dry=0 setup=0
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --all) targets=(all) ;;
    -n|--dry-run) dry=1 ;;
    --cores) cores=${2:?--cores needs a number}; shift ;;
    --threads) threads=${2:?--threads needs a number}; shift ;;
    --force) force=${2:?--force needs notebook numbers, e.g. 03,05}; shift ;;
    --fresh) fresh=1 ;;
    --profile) snake+=(--profile "${2:?--profile needs a folder}"); shift ;;
    --setup) setup=1 ;;
    --) shift; snake+=("$@"); break ;;
    -*) echo "error: unknown option $1 (./run_all.sh --help lists them)" >&2; exit 2 ;;
    *) params+=("$1") ;;
  esac
  shift
done
for option in cores threads; do  # Snakemake waits forever with --cores 0; the Snakefile reads --threads as a number
  [[ ${!option} =~ ^[1-9][0-9]{0,3}$ ]] ||
    { echo "error: --$option needs a whole number from 1 to 9999, got '${!option}'" >&2; exit 2; }
done
if ((threads != 2)); then
  echo "note: --threads $threads: each notebook computes with $threads torch threads, not the committed numbers' 2: its" \
       "numbers will differ from the committed ones in their last digits (docs/arithmetic.md)"
fi
if ((cores < threads)); then  # Snakemake would cut each notebook's threads down to the cores, and so its numbers
  echo "note: $cores core(s): one notebook at a time, each still with its $threads torch threads (the numbers depend on them)"
  cores=$threads
fi
if [[ ${targets[0]} == all && ${#params[@]} -gt 0 ]]; then
  echo "error: --all runs the whole family; give no params files with it" >&2; exit 2
fi

tools/ensure_env.sh
((setup)) && { echo "set up: .venv, the Jupyter kernel inverse-vae, the notebook output filter"; exit 0; }
py=.venv/bin/python
if ((${#params[@]})); then
  $py -m inverse_vae check-params "${params[@]}" >/dev/null
  runs=$(IFS=,; echo "${params[*]}")
elif [[ ${targets[0]} == all ]]; then
  runs=""
else
  runs=params/default.yaml
fi
config=(threads="$threads")
[[ -n $runs ]] && config+=(runs="$runs")
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  config+=(gpu=1); snake+=(--resources gpu="$(nvidia-smi -L | grep -c GPU)")
fi
for nb in ${force//,/ }; do
  [[ -n $(cd notebooks && ls "$nb"_*.ipynb 2>/dev/null) ]] || { echo "error: --force $nb: no notebook notebooks/${nb}_*.ipynb" >&2; exit 2; }
done
export PATH="$PWD/.venv/bin:$PATH"  # the rules run `python` from PATH: this project's
engine=(snakemake --cores "$cores" --rerun-triggers mtime --drop-metadata)
engine_says() {  # Snakemake, without its banner (--quiet host), the two lines it says before any plan, and its
  # warning that no metadata is kept (--drop-metadata: the notebooks' records decide, not Snakemake's)
  local said='/^Assuming unrestricted shared filesystem usage\.$/d; /^Building DAG of jobs\.\.\.$/d; /jobs have missing provenance\/metadata/d; /^Rules with missing metadata:/d'
  "${engine[@]}" "$@" --quiet rules host > >(sed -u "$said") 2> >(sed -u "$said" >&2)
}
plan=(--runs "$runs")
[[ ${targets[0]} == all ]] && plan+=(--all)
[[ -n $force ]] && plan+=(--force "$force")
((fresh)) && plan+=(--fresh)
if ((dry)); then  # a dry run's receipts go into a folder of its own, removed after: it writes nothing of the study's
  receipts=$(mktemp -d)
  trap 'rm -rf "$receipts"' EXIT
else  # one ./run_all.sh at a time: --fresh, the plan and the engine all happen under this lock
  if command -v flock >/dev/null; then  # util-linux; macOS has none
    exec 9>>reports/.lock
    flock -n 9 || { echo "error: another ./run_all.sh is running in this project (it holds reports/.lock): wait for it to end" >&2; exit 2; }
  else
    echo "note: no flock(1) here: a second ./run_all.sh at the same time is not refused before its --fresh (Snakemake's lock still refuses its engine)" >&2
  fi
  receipts=reports/.receipts
  if ((fresh)); then
    $py - "$runs" <<'EOF'
import sys
from pathlib import Path
from inverse_vae.core.config import family
from inverse_vae.core.files import set_aside
for p in (sys.argv[1].split(",") if sys.argv[1] else family("params")):
    moved = set_aside(Path("reports") / Path(p).stem, Path("reports/.old"), Path(p).stem)
    print(f"{Path(p).stem}: earlier outputs set aside in {moved}/ (nothing deleted)" if moved else f"{Path(p).stem}: nothing to set aside")
EOF
  fi
fi
config+=(receipts="$receipts")
# What each executed notebook records decides what runs (workflow/plan.py), one line each with why;
# runs made off the pinned arithmetic are named in a note (stderr), not re-run.
planned=$($py -m workflow plan "${plan[@]}" --receipts "$receipts")
if [[ -z $planned ]] && ((! ${#snake[@]})); then
  echo "Nothing to be done (all requested files are present and up to date)."; exit 0
fi
[[ -n $planned ]] && echo "$planned"
if ((dry)); then
  engine_says "${targets[@]}" --config "${config[@]}" --dry-run "${snake[@]}"; exit
fi
data=$($py -m inverse_vae fetch-data --root data)  # said when it had to fetch: a run with nothing to do says one line
[[ $data == *"present and verified"* ]] || echo "$data"
engine_says "${targets[@]}" --config "${config[@]}" "${snake[@]}"
