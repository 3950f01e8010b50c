#!/usr/bin/env bash
# The study in one command: set up if needed, fetch MNIST, then the workflow engine (Snakemake, see the
# Snakefile) runs what is out of date, a notebook per rule through papermill, and renders the pages.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'EOF'
usage: ./run_all.sh [options] [params/RUN.yaml ...] [-- snakemake options]

  (no params file)      the default run, params/default.yaml -> reports/default/, then the pages
  params/a.yaml ...     those runs (each params/NAME.yaml -> reports/NAME/)
  --all                 the whole family (every params/*.yaml but smoke), the summary, the pages
  -n, --dry-run         say what would run and why, run nothing (in a fresh checkout, the first call, a dry
                        run too, records the committed reports as up to date in .snakemake/: about 15 s)
  --cores N             run up to N cores' worth of notebooks side by side (default: all cores)
  --threads N           torch threads per notebook (default 2: the committed numbers' setting)
  --force NN[,NN]       re-run these notebooks (e.g. 03,05) of the runs selected, even if up to date
                        (98, 99: the explorer, the summary)
  --fresh               first move the runs' earlier outputs into reports/.old/ (nothing deleted)
  --profile DIR         a Snakemake profile, e.g. profiles/slurm (see docs/workflow.md)
  --setup               set up only (.venv, the Jupyter kernel, the git filter), then stop
  -h, --help            this text, and nothing else

Only what is out of date runs: an edited params file re-runs the notebooks whose results depend on
what changed (docs/workflow.md says which keys each reads); nothing else does.
EOF
}

targets=(run) params=() snake=() forced=() cores=$(nproc 2>/dev/null || echo 2) threads=2 fresh=0 force="" dry=0 setup=0
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
if [[ -n $force ]]; then
  selected=$($py -c 'import sys; from pathlib import Path; from inverse_vae.core.config import family
print(" ".join(Path(p).stem for p in (sys.argv[1].split(",") if sys.argv[1] else family("params"))))' "$runs")
  rules=()
  for nb in ${force//,/ }; do
    name=$(cd notebooks && ls "$nb"_*.ipynb 2>/dev/null | head -1) || true
    [[ -n $name ]] || { echo "error: --force $nb: no notebook notebooks/${nb}_*.ipynb" >&2; exit 2; }
    case $nb in  # the notebooks across runs have one rule each
      98) rules+=(explore) ;;
      99) rules+=(summary) ;;
      *) for run in $selected; do rules+=("${name%.ipynb}__${run//-/_}"); done ;;
    esac
  done
  forced+=("${rules[@]}")
fi
engine=(.venv/bin/snakemake --cores "$cores" --config "${config[@]}" --rerun-triggers params input code --keep-incomplete --rerun-incomplete)
engine_says() {  # Snakemake, without its banner (--quiet host) and the two lines it says before any plan
  local said='/^Assuming unrestricted shared filesystem usage\.$/d; /^Building DAG of jobs\.\.\.$/d'
  exec "${engine[@]}" "$@" --quiet rules host > >(sed -u "$said") 2> >(sed -u "$said" >&2)
}
# A fresh clone: the committed reports are what the committed params and notebooks made (the tests check
# it); file times after a checkout are arbitrary, so record them once as up to date instead.
adopted=0
if [[ -z $(ls -A .snakemake/metadata 2>/dev/null) ]] && git diff --quiet HEAD -- params notebooks reports 2>/dev/null; then
  echo "first run in this checkout: recording the committed reports as up to date in .snakemake/ (snakemake --touch)"
  adopt_log=$(mktemp)
  "${engine[@]}" all --touch --forceall --quiet rules progress >"$adopt_log" 2>&1 || { cat "$adopt_log" >&2; exit 1; }
  rm -f "$adopt_log"
  adopted=1
fi
# What an executed notebook says of itself decides too: one executed from other code cells than its notebook's
# (or holding an error) re-runs, whatever the engine's records say (they may be adopted, or another checkout's);
# runs made off the pinned arithmetic are named in a note (stderr), not re-run.
stale=$($py -m inverse_vae stale --runs "$runs")
[[ -n $stale ]] && { echo "not up to date (executed from other code, failed, or its metrics damaged): $stale"; forced+=($stale); }
if ((adopted && ! fresh && ! ${#forced[@]} && ! ${#snake[@]})); then  # every output was just recorded as up to date
  echo "Nothing to be done (all requested files are present and up to date)."; exit 0
fi
((${#forced[@]})) && snake+=(--forcerun "${forced[@]}")
((dry)) && engine_says "${targets[@]}" --dry-run "${snake[@]}"
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
data=$($py -m inverse_vae fetch-data --root data)  # said when it had to fetch: a run with nothing to do says one line
[[ $data == *"present and verified"* ]] || echo "$data"
engine_says "${targets[@]}" "${snake[@]}"
