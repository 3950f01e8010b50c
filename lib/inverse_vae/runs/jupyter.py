"""JupyterLab for this project: the kernel "inverse-vae" and a save hook that keeps notebooks/ as committed.

A notebook saved from JupyterLab into a project's notebooks/ is written without outputs, execution counts
and language_info, exactly as the git filter (nbstripout, .gitattributes) would commit it, so `git status`
stays clean: git compares file sizes before it runs a filter, so a filter alone leaves a saved notebook
listed as modified. Executed copies live in reports/ (./run_all.sh), or save one with File > Save As
elsewhere. `inverse-vae jupyter-setup` installs both into the running Python's environment (sys.prefix).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbstripout import strip_output

from ..errors import StudyError

# nbstripout's own defaults, and language_info (JupyterLab rewrites it with the machine's Python version);
# the git filter in tools/ensure_env.sh strips the same (nbstripout --extra-keys metadata.language_info).
STRIPPED_KEYS = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                 "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
                 "cell.metadata.scrolled", "metadata.language_info"]
KERNEL, KERNEL_TITLE = "inverse-vae", "Python (inverse-vae)"
HOOK = f"{__name__}.strip_before_save"


def is_project_notebook(path: Path) -> bool:
    """A notebook in the notebooks/ folder of a project (pyproject.toml and params/ beside it)."""
    folder = path.parent
    return path.suffix == ".ipynb" and folder.name == "notebooks" and (folder.parent / "pyproject.toml").is_file() \
        and (folder.parent / "params").is_dir()


def strip_before_save(model: dict, path: str, contents_manager, **kwargs) -> None:
    """jupyter_server's pre_save_hook: a project notebook is saved as the git filter would commit it."""
    if model.get("type") != "notebook" or not is_project_notebook(Path(contents_manager.root_dir) / path):
        return
    notebook = nbformat.from_dict(model["content"])
    model["content"] = strip_output(notebook, keep_output=False, keep_count=False, keep_id=False,
                                    extra_keys=STRIPPED_KEYS)


def setup() -> list[Path]:
    """Install the kernel and the save hook's server config into sys.prefix; the files written."""
    done = subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL,
                           "--display-name", KERNEL_TITLE], capture_output=True, text=True)
    if done.returncode != 0:  # one line, not a CalledProcessError traceback
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise StudyError(f"installing the Jupyter kernel {KERNEL} failed: {last}")
    # jupyter_server reads general settings from jupyter_server_config.json (its .d folder only enables extensions)
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    settings = json.loads(config.read_text()) if config.is_file() else {}
    settings.setdefault("ContentsManager", {})["pre_save_hook"] = HOOK
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(settings, indent=2) + "\n")
    return [Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL, config]
