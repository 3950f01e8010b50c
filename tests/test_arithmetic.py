"""The pinned arithmetic path (docs/arithmetic.md): set on import, respected when set otherwise, recorded in every
metrics file, and a report made off it is stale."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from inverse_vae import arithmetic
from workflow import plan

ROOT = Path(__file__).resolve().parents[1]
CLEAN = {k: v for k, v in os.environ.items()
         if k not in (*arithmetic.PINS, *arithmetic.WAITING, "OMP_NUM_THREADS", arithmetic._OFF_PATH_NOTE)}


def _fresh_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**CLEAN, **env}, capture_output=True, text=True,
                          cwd=ROOT, check=True)


def test_importing_the_study_pins_the_path_even_after_torch():
    code = ("import json, os, torch; import inverse_vae; from inverse_vae import arithmetic\n"
            "print(json.dumps({'record': arithmetic.record(), 'env': {k: os.environ.get(k) for k in arithmetic.PINS}}))")
    out = json.loads(_fresh_python(code).stdout)
    assert out["env"] == arithmetic.PINS
    record = out["record"]
    assert record["threads"] == arithmetic.THREADS and record["pins"] == arithmetic.PINS
    assert record["isa"] == "AVX2" and record["pinned"] is True and record["off_path"] == []  # CI's CPUs have AVX2
    assert record["cpu"] and record["torch"] and record["mkl"]


def test_a_pin_set_otherwise_is_kept_said_in_one_line_and_recorded():
    code = "import inverse_vae, json; from inverse_vae import arithmetic; print(json.dumps(arithmetic.record()))"
    done = _fresh_python(code, ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")
    record = json.loads(done.stdout)
    assert record["pinned"] is False and record["isa"] == "DEFAULT" and record["threads"] == 1
    assert "ATEN_CPU_CAPABILITY=default" in record["off_path"] and "threads=1" in record["off_path"]
    assert done.stderr.count("\n") == 1 and "off the pinned arithmetic path" in done.stderr
    quiet = _fresh_python(code, ATEN_CPU_CAPABILITY="default", INVERSE_VAE_QUIET_ARITHMETIC="1")
    assert quiet.stderr == ""


def test_departures_name_each_pin_that_differs(monkeypatch):
    for name, value in arithmetic.PINS.items():
        monkeypatch.setenv(name, value.lower())  # the libraries read these case-insensitively
    monkeypatch.setenv("OMP_NUM_THREADS", str(arithmetic.THREADS))
    assert arithmetic._departures() == []
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert arithmetic._departures() == ["MKL_CBWR=COMPATIBLE", "threads=unset"]


def test_every_metrics_file_records_its_arithmetic(tiny_run):
    written = json.loads(tiny_run.write_metrics("02_evaluate", {"bce": 0.1}).read_text())
    assert written["bce"] == 0.1 and written["arithmetic"]["pinned"] is True


def test_a_report_made_off_the_pinned_path_is_said_and_a_damaged_one_re_run(tmp_path):
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(notebook, tmp_path / "notebooks" / "02_evaluate.ipynb")
    for run, made in (("pinned", {"pinned": True}), ("native", {"pinned": False}), ("unsaid", None),
                      ("truncated", '{"bce": 0.'), ("listed", [1])):
        (tmp_path / "reports" / run / "metrics").mkdir(parents=True)
        nbformat.write(notebook, tmp_path / "reports" / run / "02_evaluate.ipynb")
        text = made if isinstance(made, str) else json.dumps(made if isinstance(made, list) else
                                                             {"bce": 0.1, **({"arithmetic": made} if made else {})})
        (tmp_path / "reports" / run / "metrics" / "02_evaluate.json").write_text(text)
    assert [plan.arithmetic_of(tmp_path / "reports" / run / "metrics" / "02_evaluate.json")
            for run in ("listed", "truncated")] == ["damaged", "damaged"]  # re-run: not what its record says it wrote
    line = plan.off_path(tmp_path)  # made off the path: said, not re-run (hours for the family)
    assert "made off the pinned arithmetic path" in line and line.count("\n") == 0
    assert ": native, unsaid;" in line
    assert plan.off_path(tmp_path, runs="params/pinned.yaml") == ""


def test_the_kernel_starts_on_the_pinned_path():
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "inverse-vae" / "kernel.json"
    env = json.loads(spec.read_text())["env"]
    assert env == {**arithmetic.PINS, "OMP_NUM_THREADS": str(arithmetic.THREADS), **arithmetic.WAITING}, \
        "run tools/ensure_env.sh"


def test_the_goldens_were_made_on_the_pinned_path():
    files = sorted(ROOT.glob("tests/goldens/metrics/*.json"))
    off = [str(p.relative_to(ROOT)) for p in files if plan.arithmetic_of(p) != "pinned"]
    assert files and not off, f"made off the pinned path (remake them: tools/make_goldens.py): {off}"
