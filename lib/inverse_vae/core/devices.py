"""Pick the torch device a params file asks for, falling back to the CPU with a warning."""
from __future__ import annotations

import warnings

import torch


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available() and mps.is_built())


def resolve_device(name: str) -> torch.device:
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        warnings.warn("device 'cuda' requested but CUDA is not available; using the CPU", stacklevel=2)
        return torch.device("cpu")
    if name == "mps" and not _mps_available():
        warnings.warn("device 'mps' requested but MPS is not available; using the CPU", stacklevel=2)
        return torch.device("cpu")
    return torch.device(name)


def resolve_device_said(name: str, say=print) -> torch.device:
    """resolve_device, with a fallback said in one plain line (a warning would print this file's path
    into a saved notebook)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = resolve_device(name)
    for w in caught:
        say(f"note: {w.message}")
    return chosen
