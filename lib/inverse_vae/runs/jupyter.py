"""JupyterLab for this project: the kernel "inverse-vae", and a save hook that writes notebooks/ as the git filter
(nbstripout, .gitattributes) commits them. A filter alone leaves a saved notebook listed as modified: git compares
file sizes before it runs one. `inverse-vae jupyter-setup` installs both into this Python's environment (sys.prefix).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbstripout import strip_output

from ..core.files import atomic_write, is_project_root
from ..errors import StudyError

# nbstripout's own defaults, and language_info (JupyterLab rewrites it with the machine's Python version);
# the git filter in tools/ensure_env.sh strips the same (nbstripout --extra-keys metadata.language_info).
STRIPPED_KEYS = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                 "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
                 "cell.metadata.scrolled", "metadata.language_info"]
KERNEL = "inverse-vae"


def strip_before_save(model: dict, path: str, contents_manager, **kwargs) -> None:
    """jupyter_server's pre_save_hook: a notebook in a project's notebooks/ (pyproject.toml and params/ beside it)
    is saved without outputs, counts and language_info; any other file as it is."""
    folder = (Path(contents_manager.root_dir) / path).parent
    if model.get("type") != "notebook" or folder.name != "notebooks" or not is_project_root(folder.parent):
        return
    model["content"] = strip_output(nbformat.from_dict(model["content"]), keep_output=False, keep_count=False, keep_id=False,
                                    extra_keys=STRIPPED_KEYS)


def setup() -> list[Path]:
    """Install the kernel and the save hook's server config into sys.prefix; the files written. A failure is an
    OSError or a StudyError: one line on the command line."""
    try:
        from ipykernel.kernelspec import install  # what `python -m ipykernel install --sys-prefix` calls
    except ImportError:
        raise StudyError(f"jupyter-setup: ipykernel is not installed in {sys.prefix}; run tools/ensure_env.sh, "
                         f"which installs it from requirements.lock") from None
    kernel = install(kernel_name=KERNEL, display_name=f"Python ({KERNEL})", prefix=sys.prefix)
    # jupyter_server reads general settings from jupyter_server_config.json (its .d folder only enables extensions)
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    try:
        settings = json.loads(config.read_text()) if config.is_file() else {}
    except ValueError:
        raise StudyError(f"{config}: not valid JSON; fix or remove it, then run jupyter-setup again") from None
    settings.setdefault("ContentsManager", {})["pre_save_hook"] = f"{__name__}.strip_before_save"
    atomic_write(config, json.dumps(settings, indent=2) + "\n")
    return [Path(kernel), config]
