"""Packaging: the console script `inverse-vae` (the same subcommands as python -m workflow), the
test tools as an extra that the set-up installs, the license and readme metadata."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("check-params", "fetch-data", "compact", "execute", "page", "index", "plan", "jupyter-setup")

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
    module = _help(sys.executable, "-m", "workflow")  # the study's commands and the workflow's
    assert re.findall(r"\{([a-z,-]+)\}", shown) == re.findall(r"\{([a-z,-]+)\}", module)  # the same subcommands
    assert "--reports-root" in _help(str(script), "execute")  # a subcommand's own options, through the script


def test_the_script_is_declared_and_points_at_main():
    from workflow.__main__ import main

    assert _pyproject()["project"]["scripts"] == {"inverse-vae": "workflow.__main__:main"}
    assert callable(main)
    study = _help(sys.executable, "-m", "inverse_vae")  # the study's own commands, without the workflow's
    assert "check-params" in study and "plan" not in study and "execute" not in study


def test_the_package_exports_its_entry_points_and_loads_torch_only_when_asked():
    code = ("import sys, inverse_vae as iv; before = 'torch' in sys.modules; "
            "from inverse_vae.runs.run import open_run; from inverse_vae.core import checkpoints; "
            "assert iv.open_run is open_run and iv.load_model is checkpoints.load_model; "
            "assert iv.load_checkpoint is checkpoints.load_checkpoint; "
            "assert all(getattr(iv, name) is not None for name in iv.__all__); print(before)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"  # `import inverse_vae` alone stays light
    import inverse_vae

    assert set(inverse_vae.__all__) >= {"load_config", "load_checkpoint", "load_model", "open_run", "ParamsError",
                                        "StudyError", "CheckpointError", "DataError", "TrainingError"}
    assert issubclass(inverse_vae.ParamsError, inverse_vae.StudyError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        inverse_vae.nope  # noqa: B018


def test_test_tools_are_an_extra_pinned_in_the_lock():
    project = _pyproject()["project"]
    extra = project["optional-dependencies"]["test"]
    assert set(extra) == {"pytest", "nbval", "ruff", "playwright"}
    assert not set(extra) & set(project["dependencies"])
    pinned = {line.split("==")[0].lower() for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert set(extra) <= pinned  # a set-up from the lock has them, at fixed versions


def test_the_set_up_installs_the_extra_and_conda_gets_it_too():
    assert re.search(r'pip install .*-c requirements\.lock -e "\.\[test\]"', (ROOT / "tools" / "ensure_env.sh").read_text())
    env = (ROOT / "environment.yml").read_text()
    assert "- -e .[test]" in env and "inverse-vae jupyter-setup" in env


def test_license_and_readme_metadata():
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["readme"] == "README.md" and (ROOT / "README.md").is_file()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules that lib/ imports, outside the standard library and the study: module -> files."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "inverse_vae":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_package_the_library_imports_is_pinned_in_the_lock():
    from importlib.metadata import packages_distributions

    pinned = {_canonical(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    distributions = packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "numpy", "yaml"} <= set(imports)  # the scan sees the imports
    unpinned = {module: sorted(files) for module, files in imports.items()
                if not {_canonical(d) for d in distributions.get(module, [module])} & pinned}
    assert not unpinned, unpinned


@pytest.mark.slow
def test_set_up_alone_makes_git_ignore_outputs_saved_into_a_notebook(tmp_path):
    """`./run_all.sh --setup` in a fresh clone (its .venv the project's): the git filter is in place, a
    notebook saved with outputs and JupyterLab's language_info puts nothing into git, nothing else ran."""
    import nbformat

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=600)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    done = subprocess.run(["./run_all.sh", "--setup"], cwd=clone, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (clone / ".snakemake").exists() and not (clone / "data").exists()  # set-up only
    path = clone / "notebooks" / "03_invert.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.execution_count = 7
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="an output\n")]
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.7", "file_extension": ".py"}
    nbformat.write(notebook, path)
    # Another editor saved it (JupyterLab's save hook strips outputs itself: tests/runs/test_jupyter.py): git may
    # list it as modified (it compares sizes before filtering), but `git add` stages nothing.
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--stat"], cwd=clone, capture_output=True, text=True).stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert staged == "" and status == "", staged + status
    assert "an output" in path.read_text()  # the file keeps its outputs; only git does not see them


def test_the_set_up_leaves_a_linked_venv_to_the_checkout_it_belongs_to(tmp_path):
    """A clone whose .venv links another checkout's (the workflow tests make such clones) must not reinstall the
    study into it: the editable install would then point at the clone's lib/, gone with the clone."""
    (tmp_path / "tools").mkdir()
    shutil.copy2(ROOT / "tools" / "ensure_env.sh", tmp_path / "tools")
    (tmp_path / "requirements.lock").write_text("torch==0\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    venv = tmp_path / "other" / ".venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (venv / "bin" / "python").chmod(0o755)
    (tmp_path / ".venv").symlink_to(venv)
    done = subprocess.run(["bash", "tools/ensure_env.sh"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "is a link to another checkout's environment, left as it is" in done.stdout
    assert "pip" not in (calls.read_text() if calls.exists() else "")
