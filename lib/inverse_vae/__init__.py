"""inverse_vae: can a network's input be recovered from its output? The study's thin library."""
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .errors import CheckpointError, DataError, ParamsError, StudyError, TrainingError
from .params import load_params
from .paths import open_run, project_root

__all__ = [
    "CheckpointError", "DataError", "ParamsError", "StudyError", "TrainingError",
    "load_checkpoint", "load_model", "load_params", "open_run", "project_root", "save_checkpoint",
]
