#!/usr/bin/env bash
# Set up if needed, fetch MNIST, then run every notebook through papermill into reports/<run>/.
#   ./run_all.sh                          # params/default.yaml -> reports/default/
#   ./run_all.sh params/a.yaml params/b.yaml
#   ONLY=01,02 ./run_all.sh params/smoke.yaml
# Every params file is validated before anything runs; a bad one exits 2 and writes nothing.
set -euo pipefail
cd "$(dirname "$0")"
tools/ensure_env.sh
[[ $# -gt 0 ]] || set -- params/default.yaml
.venv/bin/python -m inverse_vae check-params "$@"
.venv/bin/python -m inverse_vae fetch-data --root data
.venv/bin/python -m inverse_vae run-notebooks "$@" ${ONLY:+--only "$ONLY"}
.venv/bin/python -m inverse_vae index
