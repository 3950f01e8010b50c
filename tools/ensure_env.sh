#!/usr/bin/env bash
# Create or refresh .venv from requirements.lock, install the study editable with its [test] extra (and so
# the command .venv/bin/inverse-vae), install its Jupyter kernel "inverse-vae" and save hook, and make git strip the
# outputs of notebooks/*.ipynb when they are committed (nbstripout, as a git filter; .gitattributes says
# which files). Run by run_all.sh and run_tests.sh; safe to run again (does nothing when up to date).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.study-env
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)

if [[ -L .venv && -x .venv/bin/python ]]; then
  # A .venv linked from another checkout is that checkout's: installing the study here would point it at this
  # folder's lib/ (and a test's clone is deleted after it). It is used as it is.
  [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] ||
    echo "note: .venv is a link to another checkout's environment, left as it is (run tools/ensure_env.sh there)"
elif [[ ! -x .venv/bin/python ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setting up .venv (pinned packages from requirements.lock; a few minutes the first time)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.lock
  # The study, editable, with its test extra; -c keeps every version the lock's.
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[test]"
  echo "$want" > "$stamp"
fi
# The kernel "inverse-vae" and JupyterLab's save hook (notebooks/ saved without outputs: workflow/jupyter_setup.py),
# installed again when the hook named is not this one (it moved). The kernel's spec carries the pinned arithmetic.
{ grep -qs '"workflow.jupyter_setup.strip_before_save"' .venv/etc/jupyter/jupyter_server_config.json &&
  grep -qs OMP_WAIT_POLICY .venv/share/jupyter/kernels/inverse-vae/kernel.json; } ||
  .venv/bin/python -m workflow jupyter-setup >/dev/null
# Outputs saved in JupyterLab never reach git: the filter nbstripout applies to the files .gitattributes names.
# It drops language_info too, which JupyterLab rewrites with this machine's Python version on every save.
strip="'$PWD/.venv/bin/python' -m nbstripout --extra-keys metadata.language_info"
if git rev-parse --git-dir >/dev/null 2>&1 && [[ "$(git config --get filter.nbstripout.clean || true)" != "$strip" ]]; then
  git config filter.nbstripout.clean "$strip"
  git config filter.nbstripout.smudge cat
  git config diff.ipynb.textconv "$strip -t"
fi
