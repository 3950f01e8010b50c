"""The one way the study writes a file: whole or not at all (checkpoints, MNIST files, metrics, pages)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], None]


def atomic_write(path: str | Path, content: Content, verify: Callable[[Path], None] | None = None) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function writing to a binary file) to `path`.

    The bytes go to a temporary file in the same folder (so the rename stays on one file
    system), are fsynced, then os.replace puts them under the final name: a reader, a crash
    or a kill never sees half a file, and any previous file at `path` stays intact until then.
    `verify(temp_path)` may raise to refuse the bytes before they land. On any error, a
    KeyboardInterrupt included, the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; nothing the study writes is secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
