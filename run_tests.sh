#!/usr/bin/env bash
# Set up if needed, fetch MNIST, then run the whole test suite (unit tests + notebook tests).
# Extra arguments go to pytest, e.g. ./run_tests.sh -k params
set -euo pipefail
cd "$(dirname "$0")"
tools/ensure_env.sh
.venv/bin/python -m inverse_vae fetch-data --root data
exec .venv/bin/python -m pytest "$@"
