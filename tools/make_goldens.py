"""Refresh what the notebook tests compare against, from the smoke params: run it after changing a notebook
or a computation on purpose, then review the diff of tests/goldens/metrics/.

    .venv/bin/python tools/make_goldens.py

Writes tests/goldens/NN_name.ipynb (each notebook executed on params/smoke.yaml into tests/.nbval_reports,
where nbval re-executes it: every cell must run, the key-number cells' lines must match) and
tests/goldens/metrics/NN_name.json (tests/notebooks/test_golden_metrics.py compares a fresh run's
metrics with them within tolerances another CPU's rounding stays inside).
"""
import shutil
from pathlib import Path

from inverse_vae.constants import NOTEBOOKS
from workflow.execute import execute

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "tests" / ".nbval_reports"  # where the goldens' injected parameters send their run

shutil.rmtree(REPORTS, ignore_errors=True)
goldens = ROOT / "tests" / "goldens"
for name in NOTEBOOKS:
    executed = execute(f"notebooks/{name}.ipynb", "params/smoke.yaml", "tests/.nbval_reports", ROOT)
    shutil.copy2(executed, goldens / executed.name)
shutil.rmtree(goldens / "metrics", ignore_errors=True)
shutil.copytree(REPORTS / "smoke" / "metrics", goldens / "metrics")
print(f"wrote {len(NOTEBOOKS)} goldens and their metrics into {goldens.relative_to(ROOT)}")
