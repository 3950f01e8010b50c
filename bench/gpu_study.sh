#!/usr/bin/env bash
# Run and time the study on a GPU machine whose python3 already has torch (a lent cloud machine,
# say) but not this project's .venv: the library runs from lib/ (PYTHONPATH), the notebooks
# through the same runner as run_all.sh, then bench/study_time.py prints the table.
#   bench/gpu_study.sh                                  # params/default.yaml -> reports/gpu/default/
#   bench/gpu_study.sh params/default.yaml params/smoke.yaml
# Optional environment, for a machine without internet:
#   WHEELS=dir     wheels to install first (papermill, ipykernel, openTSNE and what they need
#                  that the machine lacks), with pip --no-index --no-deps
#   MNIST_GZ=dir   the four MNIST IDX files gzipped (checked by MD5 after unpacking, as always)
#   REPORTS_ROOT   where the runs go (default reports/gpu, so the committed CPU reports stay)
#   PYTHON         the interpreter (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ -n "${WHEELS:-}" ]]; then
    "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
fi
if [[ -n "${MNIST_GZ:-}" ]]; then
    mkdir -p data/MNIST/raw
    for f in "$MNIST_GZ"/*.gz; do gunzip -c "$f" > "data/MNIST/raw/$(basename "$f" .gz)"; done
fi
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
"$PY" -m inverse_vae fetch-data --root data
[[ $# -gt 0 ]] || set -- params/default.yaml
"$PY" bench/study_time.py --run --fresh --reports-root "${REPORTS_ROOT:-reports/gpu}" "$@"
