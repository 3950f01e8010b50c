"""Packaging: the console script `inverse-vae` (the same subcommands as python -m inverse_vae), the
test tools as an extra that the set-up installs, the license and readme metadata."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("check-params", "fetch-data", "run-notebooks", "make-goldens", "index")

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _help(*command: str) -> str:
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_console_script_lists_the_subcommands():
    script = Path(sys.executable).parent / "inverse-vae"
    if not script.is_file():
        pytest.skip(f"{script} is not installed: run tools/ensure_env.sh (it installs the package and its command)")
    shown = _help(str(script))
    assert shown.startswith("usage: inverse-vae ")
    for name in SUBCOMMANDS:
        assert name in shown
    module = _help(sys.executable, "-m", "inverse_vae")
    assert re.findall(r"\{([a-z,-]+)\}", shown) == re.findall(r"\{([a-z,-]+)\}", module)  # the same subcommands
    assert "--fresh" in _help(str(script), "run-notebooks")


def test_the_script_is_declared_and_points_at_main():
    from inverse_vae.__main__ import main

    assert _pyproject()["project"]["scripts"] == {"inverse-vae": "inverse_vae.__main__:main"}
    assert callable(main)


def test_test_tools_are_an_extra_pinned_in_the_lock():
    project = _pyproject()["project"]
    extra = project["optional-dependencies"]["test"]
    assert set(extra) == {"pytest", "nbval", "ruff"}
    assert not set(extra) & set(project["dependencies"])
    pinned = {line.split("==")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert set(extra) <= pinned  # a set-up from the lock has them, at fixed versions


def test_the_set_up_installs_the_extra_and_conda_gets_it_too():
    assert re.search(r'pip install .*-c requirements\.lock -e "\.\[test\]"', (ROOT / "tools" / "ensure_env.sh").read_text())
    env = (ROOT / "environment.yml").read_text()
    assert "- -e .[test]" in env and "ipykernel install --sys-prefix --name inverse-vae" in env


def test_license_and_readme_metadata():
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["readme"] == "README.md" and (ROOT / "README.md").is_file()
