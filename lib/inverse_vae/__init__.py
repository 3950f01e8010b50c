"""inverse_vae: can a network's input be recovered from its output? The study's library.

Import order, one way: constants, errors -> core (config, data, model, training, checkpoints) ->
inversion (the layer table, the chain, its attribution, the solvers and methods) -> study (what the
notebooks compute) -> runs (a run's folder and its checks). What runs and publishes the study (the plan,
notebook execution, the pages) is the workflow package beside the Snakefile, workflow/. The names below that need
torch load on first use, so that `import inverse_vae.core.config` stays light.
"""
from importlib import import_module

from . import arithmetic

arithmetic.pin()  # before any computation: the dispatchers read their pins at first use

from .core.config import Config, load_config  # noqa: E402 (after the pins)
from .errors import CheckpointError, DataError, ParamsError, StudyError, TrainingError  # noqa: E402

_LAZY = {"load_checkpoint": ".core.checkpoints", "load_model": ".core.checkpoints", "open_run": ".runs.run"}
__all__ = ["CheckpointError", "Config", "DataError", "ParamsError", "StudyError", "TrainingError", "load_checkpoint",
           "load_config", "load_model", "open_run"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
