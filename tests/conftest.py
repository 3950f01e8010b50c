"""Shared fixtures: the project root, params files to mutate, a tiny run folder.

Tests that take more than a few seconds (notebooks, the workflow engine, a browser, real trainings) are
marked `slow`: `pytest -m "not slow"` is the fast tier; ./run_tests.sh runs everything.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from inverse_vae.progress import BATCH_ENV
from inverse_vae.runs.run import open_run

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """nbval's items, the cells of tests/goldens/*.ipynb, execute the smoke notebooks: slow too."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def default_raw() -> dict:
    return yaml.safe_load((ROOT / "params" / "default.yaml").read_text())


@pytest.fixture
def write_params(tmp_path):
    """Write a params mapping to tmp_path/<name>.yaml and return the path."""
    def write(data: dict, name: str = "custom") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path
    return write


@pytest.fixture
def tiny_run(tmp_path):
    """A run of the smoke params in a temporary folder, shrunk further for unit tests."""
    run = open_run(ROOT / "params" / "smoke.yaml", root=ROOT, say=lambda *_: None)
    config = run.config.replace(train={"train_epochs": 4, "batch_size": 32, "plot_epochs": 2})
    return dataclasses.replace(run, config=config, dir=tmp_path / "run")


@pytest.fixture
def bars(monkeypatch, capsys):
    """Progress forced on (tqdm's live bar, drawn on stderr); bars() reads what was drawn since the last call:
    {desc: (count, total)} as each bar last showed them."""
    monkeypatch.setenv(BATCH_ENV, "0")

    def read() -> dict[str, tuple[int, int]]:
        drawn = re.findall(r"([^\r\n]+?): +\d+%\|[^|]*\| *(\d+)/(\d+)", capsys.readouterr().err)
        return {desc: (int(count), int(total)) for desc, count, total in drawn}
    return read


# --------------------------------------------------------------------------
# Headless Chromium (Debian's chromium, installed when missing; tests that need it skip, saying why)

INSTALL_TIMEOUT_S = 900


def _which() -> str | None:
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def _apt(*args: str) -> subprocess.CompletedProcess:
    command = ["apt-get", *args]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _install_chromium() -> str:
    """Install Debian's chromium; returns why it could not ("" when it could)."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (install Chromium by hand)"
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "not root and no sudo: cannot apt-get install chromium"
    try:
        done = _apt("install", "-y", "--no-install-recommends", "chromium")
        if done.returncode != 0:  # stale package lists: update once, then try again
            _apt("update")
            done = _apt("install", "-y", "--no-install-recommends", "chromium")
    except subprocess.TimeoutExpired:
        return f"apt-get install chromium took over {INSTALL_TIMEOUT_S} s"
    except OSError as exc:
        return f"apt-get could not run: {exc}"
    return "" if done.returncode == 0 else f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless Chromium, installed with apt-get when missing; the test is skipped, saying why,
    when none can be had."""
    found = _which()
    if found is None:
        why = _install_chromium()
        found = _which()
        if found is None:
            pytest.skip(f"headless Chromium is not available: {why or 'installed, but no chromium on PATH'}")
    return found


def execute_notebooks(params_file: str, reports_root, names=None) -> Path:
    """Run the study's notebooks (all, or `names`) in order with a params file, as the workflow's rules do;
    returns the run folder."""
    from inverse_vae.constants import NOTEBOOKS
    from inverse_vae.core.config import run_name
    from workflow.execute import execute

    for name in names or NOTEBOOKS:
        execute(f"notebooks/{name}.ipynb", params_file, reports_root, ROOT, say=lambda line: None)
    return Path(reports_root if Path(reports_root).is_absolute() else ROOT / reports_root) / run_name(params_file)
