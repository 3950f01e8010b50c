"""The one way the study writes a file: whole or not at all (checkpoints, MNIST files, metrics, pages, figures,
executed notebooks), the clean-up of what a killed writer left behind, and setting a folder aside."""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from ..errors import StudyError

# mkstemp's names: .<final name>.<8 random characters>.tmp, beside the final file.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
# A writer touches its temporary file at every write; one silent this long is an orphan.
_STALE_AFTER_S = 60.0

_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied (a read-only folder?)",
    errno.EPERM: "permission denied (a read-only folder?)",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "a folder is in the way",
}


class WriteError(StudyError, OSError):
    """A file the study could not write; the previous version, if any, is intact (an OSError too, for old handlers)."""


def is_project_root(folder: Path) -> bool:
    """Whether `folder` is this study's checkout: pyproject.toml beside params/."""
    return (folder / "pyproject.toml").is_file() and (folder / "params").is_dir()


def os_error_line(path: str | Path, exc: OSError) -> str:
    """One line naming the file and the cause of an OSError, with what to do."""
    cause = _CAUSES.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)
    return f"cannot write {path}: {cause}; nothing was half-written (a previous version is kept): fix it and run again"


def temp_file(path: Path) -> tuple[int, Path]:
    """(fd, path) of a new private temporary file beside `path`, named so clean_stale_temps finds it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return fd, Path(tmp)


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function writing to a binary file, such as
    `lambda f: fig.savefig(f, format="png")`) to `path`, whole or not at all.

    The bytes go to a temporary file in the same folder (one file system), are fsynced, then os.replace
    puts them under the final name: a reader, a crash or a kill never sees half a file, and a previous
    file stays intact until then. On any error, KeyboardInterrupt included, the temporary file is
    removed; an OSError (full disk, read-only folder) becomes a WriteError naming the file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; nothing the study writes is secret
        os.replace(tmp, path)
        return path
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StudyError):
            raise WriteError(os_error_line(path, exc)) from exc
        raise


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files killed writers left under `folder` (recursively); return them. Only names
    atomic_write makes, untouched for _STALE_AFTER_S: a write in flight is never touched."""
    cutoff = time.time() - _STALE_AFTER_S
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile, or a read-only folder: leave it
            if _TEMP_NAME.match(tmp.name) and tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
    return removed


def _plain(value):
    """JSON-safe: numpy/torch scalars to numbers, inf/nan to strings, read-only mappings to dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # how a metrics file writes them (_plain)


def metric_number(value) -> float | None:
    """A metrics value as a number, the one way every reader takes it: an int or a float, or the string a metrics
    file holds for a non-finite one ("nan", "inf", "-inf"); None for anything else (a name, a flag, a section)."""
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_json(path: str | Path, values: dict) -> Path:
    """Write JSON atomically, so a reader never sees half a file."""
    return atomic_write(path, json.dumps(_plain(values), indent=2, sort_keys=True) + "\n")


def set_aside(folder: str | Path, old_root: str | Path, label: str) -> Path | None:
    """Move everything in `folder` into old_root/<label>-<YYYYmmdd-HHMMSS>/ (same file system: nothing is
    copied, nothing deleted); the folder's .lock stays. A `folder` that is a link is moved itself, never what it
    points to. Returns where they went, None when there was nothing."""
    folder = Path(folder)
    if folder.is_symlink():
        entries = [folder]
    else:
        entries = sorted(p for p in folder.iterdir() if p.name != ".lock") if folder.is_dir() else []
    if not entries:
        return None
    stamp, label = time.strftime("%Y%m%d-%H%M%S"), label[:200]  # a folder name holds 255 bytes: room for the stamp
    target, n = Path(old_root) / f"{label}-{stamp}", 1
    while target.exists():  # twice in one second
        n += 1
        target = Path(old_root) / f"{label}-{stamp}-{n}"
    try:
        target.mkdir(parents=True)
        for entry in entries:
            os.rename(entry, target / entry.name)
    except OSError as exc:
        raise StudyError(f"cannot set {folder} aside into {target}: {exc.strerror or exc}; nothing was deleted") from None
    return target
