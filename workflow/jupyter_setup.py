"""JupyterLab for this project: the kernel "inverse-vae", and a save hook that writes notebooks/ as the git filter
(nbstripout, .gitattributes) commits them. A filter alone leaves a saved notebook listed as modified: git compares
file sizes before it runs one. `inverse-vae jupyter-setup` installs both into this Python's environment (sys.prefix).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
from nbstripout import strip_output

from inverse_vae import arithmetic
from inverse_vae.core.files import atomic_write, is_project_root
from inverse_vae.errors import StudyError
from inverse_vae.runs.run import RUN_NAME, SCRATCH_ROOT

from .plan import ACROSS_RUNS

# nbstripout's own defaults, and language_info (JupyterLab rewrites it with the machine's Python version);
# the git filter in tools/ensure_env.sh strips the same (nbstripout --extra-keys metadata.language_info).
STRIPPED_KEYS = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
                 "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
                 "cell.metadata.scrolled", "metadata.language_info"]
KERNEL = "inverse-vae"


def strip_before_save(model: dict, path: str, contents_manager, **kwargs) -> None:
    """jupyter_server's pre_save_hook: a notebook in a project's notebooks/ (pyproject.toml and params/ beside it)
    is saved without outputs, counts and language_info, its outputs kept in its scratch run (`keep_outputs`); any
    other file as it is."""
    folder = (Path(contents_manager.root_dir) / path).parent
    if model.get("type") != "notebook" or folder.name != "notebooks" or not is_project_root(folder.parent):
        return
    kept = keep_outputs(model["content"], folder.parent, Path(path).name)
    if kept is not None and getattr(contents_manager, "log", None) is not None:
        contents_manager.log.info(f"{path}: saved without outputs; with them in {kept.relative_to(folder.parent)}")
    model["content"] = strip_output(nbformat.from_dict(model["content"]), keep_output=False, keep_count=False, keep_id=False,
                                    extra_keys=STRIPPED_KEYS)


def keep_outputs(content: dict, project: Path, name: str) -> Path | None:
    """A notebook with outputs, as the researcher ran it, into reports/scratch/<run>/<name> (ignored by git; <run> as
    its parameters cell's params_file names it, or summary/explore for 99/98): what a save would strip survives the
    save and a restart there. A notebook without outputs (just opened) overwrites nothing. Never fails the save."""
    notebook = nbformat.from_dict(content)
    if not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
        return None
    parameters = next((c.source for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    named = re.search(r"""^params_file\s*=\s*["']([^"']+)["']""", parameters, re.M)
    run = ACROSS_RUNS.get(Path(name).stem) or (Path(named.group(1)).stem if named else "default")
    if not RUN_NAME.match(run):
        return None
    target = project / SCRATCH_ROOT / run / name
    try:
        atomic_write(target, nbformat.writes(notebook))
    except OSError:  # a full disk or a read-only folder: the save itself goes on
        return None
    return target


def setup() -> list[Path]:
    """Install the kernel and the save hook's server config into sys.prefix; the files written. A failure is an
    OSError or a StudyError: one line on the command line."""
    try:
        from ipykernel.kernelspec import install  # what `python -m ipykernel install --sys-prefix` calls
    except ImportError:
        raise StudyError(f"jupyter-setup: ipykernel is not installed in {sys.prefix}; run tools/ensure_env.sh, "
                         f"which installs it from requirements.lock") from None
    # jupyter_server reads general settings from jupyter_server_config.json (its .d folder only enables extensions):
    # read and checked before anything is installed
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    try:
        settings = json.loads(config.read_text()) if config.is_file() else {}
    except ValueError:
        raise StudyError(f"{config}: not valid JSON; fix or remove it, then run jupyter-setup again") from None
    manager = settings.get("ContentsManager", {}) if isinstance(settings, dict) else {}
    for where, value in (("it holds", settings), ('its "ContentsManager" is', manager)):
        if not isinstance(value, dict):
            raise StudyError(f"{config}: {where} {json.dumps(value)[:40]}, not a JSON object of settings; fix or "
                             f"remove it, then run jupyter-setup again")
    kernel = install(kernel_name=KERNEL, display_name=f"Python ({KERNEL})", prefix=sys.prefix)
    # The pinned arithmetic from the kernel's start, before anything a cell imports (arithmetic.py)
    spec = Path(kernel) / "kernel.json"
    spec_json = json.loads(spec.read_text())
    spec_json["env"] = {**arithmetic.PINS, "OMP_NUM_THREADS": str(arithmetic.THREADS), **arithmetic.WAITING}
    atomic_write(spec, json.dumps(spec_json, indent=1) + "\n")
    settings.setdefault("ContentsManager", {})["pre_save_hook"] = f"{__name__}.strip_before_save"
    atomic_write(config, json.dumps(settings, indent=2) + "\n")
    return [Path(kernel), config]
