"""Save checkpoints atomically; load them (ours or the original train.py's) without running code.

A checkpoint is the original layout: a dict with `epoch`, `model_state_dict`,
`optimizer_state_dict`, `history`, `lr_scheduler_state_dict` (this study adds `train_seconds`).
Loading always uses `weights_only=True`: tensors and plain containers only, nothing executed.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from .config import Config
from .files import atomic_write

CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pt$")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` atomically: a crash or kill during the write leaves any previous file intact."""
    return atomic_write(path, lambda f: torch.save(state, f))


def checkpoint_path(model_dir: str | Path, epoch: int) -> Path:
    return Path(model_dir) / f"model_{epoch}.pt"


def latest_checkpoint(model_dir: str | Path, max_epoch: int | None = None) -> Path | None:
    """The checkpoint with the highest epoch in `model_dir` (at most `max_epoch`), or None."""
    found = []
    for p in Path(model_dir).glob("model_*.pt"):
        m = CHECKPOINT_NAME.match(p.name)
        if m and (max_epoch is None or int(m.group(1)) <= max_epoch):
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by this study or by the original train.py.

    Returns a dict that has at least `model_state_dict`. A bare state dict (name -> tensor)
    is accepted too. Never executes code from the file: anything that is not a tensor or a
    plain container is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; run notebooks/01_train.ipynb (or ./run_all.sh) first")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain containers "
                              f"(nothing from it was executed): {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or foreign file): "
                              f"{type(exc).__name__}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model_state_dict": obj}
    raise CheckpointError(f"{path}: not a VAE checkpoint (no 'model_state_dict' and not a state dict)")


def load_state_into(model: torch.nn.Module, state_dict: dict, source: str | Path) -> None:
    """Load weights into `model`, naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: does not fit this architecture: {', '.join(problems)}")
    model.load_state_dict(state_dict)


def load_model(config: Config, path: str | Path, device: str | torch.device = "cpu"):
    """Build the config's VAE and load the checkpoint's weights into it (eval mode)."""
    from .model import build_model

    model = build_model(config)
    load_state_into(model, load_checkpoint(path)["model_state_dict"], path)
    return model.to(device).eval()
