"""inverse_vae: can a network's input be recovered from its output? The study's thin library.

The names below that need torch load on first use (PEP 562), so that importing a light
module such as inverse_vae.core.config does not pull in torch through this package.
"""
from importlib import import_module

from .core.config import Config, load_config
from .errors import CheckpointError, DataError, ParamsError, StudyError, TrainingError

_LAZY = {
    "check_config": ".runs.checks",
    "load_checkpoint": ".core.checkpoints",
    "load_model": ".core.checkpoints",
    "save_checkpoint": ".core.checkpoints",
    "open_run": ".runs.paths",
    "project_root": ".runs.paths",
}

__all__ = [
    "CheckpointError", "Config", "DataError", "ParamsError", "StudyError", "TrainingError",
    "check_config", "load_checkpoint", "load_config", "load_model", "open_run", "project_root", "save_checkpoint",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # resolved once
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
