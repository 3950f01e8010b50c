"""The code follows the project's ruff configuration (pyproject.toml, [tool.ruff])."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")  # installed into .venv from requirements.lock
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: run tools/ensure_env.sh (it installs requirements.lock)")
    return [found]


def test_ruff_finds_nothing_in_lib_tests_and_bench():
    result = subprocess.run(_ruff() + ["check", "--no-cache", "lib", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_would_catch_an_unused_import(tmp_path):
    # The check above can only fail if ruff reads the configuration and sees errors: show it does.
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = subprocess.run(_ruff() + ["check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "F401" in result.stdout


def test_no_function_in_lib_is_over_60_lines():
    # Long functions hide several ideas; split them (the redesign's bar). Decorators and docstrings count.
    import ast

    long = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
