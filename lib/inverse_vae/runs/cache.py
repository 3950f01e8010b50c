"""Work shared between notebooks, computed once per run and kept in reports/<run>/cache/.

An entry is a set of numpy arrays stored as .npz (no pickle: loading never runs code) beside
the key it was computed for: the checkpoint's digest and the settings that shaped it. A key
that differs (retrained model, other params) recomputes the entry; so does a damaged file.
The folder is scratch: git ignores it and deleting it only costs the recomputation.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.files import atomic_write

Arrays = dict[str, np.ndarray]
_KEY = "__key__"  # the entry's key, stored as a JSON string array inside the .npz


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (the identity of a checkpoint in a cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: Path, key: str) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if _KEY not in data.files or str(data[_KEY]) != key:
                return None
            return {name: data[name] for name in data.files if name != _KEY}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None  # damaged or foreign: recompute


def cached_arrays(folder: str | Path, name: str, key: dict, compute: Callable[[], Arrays]) -> Arrays:
    """The arrays stored as `name` under `folder` for this `key`, computing and storing them if absent."""
    path = Path(folder) / f"{name}.npz"
    key_text = json.dumps(key, sort_keys=True)
    found = _read(path, key_text) if path.is_file() else None
    if found is not None:
        return found
    arrays = compute()
    buffer = io.BytesIO()
    np.savez(buffer, **{_KEY: np.array(key_text)}, **arrays)
    atomic_write(path, buffer.getvalue())
    return arrays
