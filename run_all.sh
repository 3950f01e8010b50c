#!/usr/bin/env bash
# Set up if needed, fetch MNIST, then run every notebook through papermill into reports/<run>/.
#   ./run_all.sh                          # params/default.yaml -> reports/default/
#   ./run_all.sh params/a.yaml params/b.yaml
#   ONLY=01,02 ./run_all.sh params/smoke.yaml
#   ./run_all.sh --fresh [params/...]     # first move the run's earlier outputs into
#                                         # reports/.old/<run>-<YYYYmmdd-HHMMSS>/ (nothing deleted)
#   ./run_all.sh --all [--fresh]          # the family: every params/*.yaml but smoke.yaml, then the
#                                         # summary across runs (reports/summary/), then the index
# Every params file is validated before anything runs; a bad one exits 2 and writes nothing.
set -euo pipefail
cd "$(dirname "$0")"
fresh=()
params=()
all=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=(--fresh) ;;
    --all) all=1 ;;
    *) params+=("$arg") ;;
  esac
done
if [[ $all == 1 ]]; then
  if [[ ${#params[@]} -gt 0 ]]; then
    echo "error: --all runs every params file of params/ (but smoke.yaml); give no params files with it" >&2
    exit 2
  fi
  # squeezed first: notebook 04 of the default run reads its model (failure.squeezed_params)
  [[ -f params/squeezed.yaml ]] && params+=(params/squeezed.yaml)
  for f in params/*.yaml; do [[ "$f" == params/smoke.yaml || "$f" == params/squeezed.yaml ]] || params+=("$f"); done
fi
set -- ${params[@]+"${params[@]}"}
tools/ensure_env.sh
[[ $# -gt 0 ]] || set -- params/default.yaml
.venv/bin/python -m inverse_vae check-params "$@"
.venv/bin/python -m inverse_vae fetch-data --root data
.venv/bin/python -m inverse_vae run-notebooks "$@" ${ONLY:+--only "$ONLY"} ${fresh[@]+"${fresh[@]}"}
if [[ $all == 1 ]]; then .venv/bin/python -m inverse_vae summary; fi
.venv/bin/python -m inverse_vae index
