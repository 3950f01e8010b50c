"""load_mnist reads only the raw IDX files whose MD5s were checked (issue #27, third pass).

torchvision's MNIST class preferred a legacy MNIST/processed/*.pt cache over the verified raw
files, so fake processed files beside good raw ones loaded as all-zero images labelled 7; and a raw
file swapped after verification was read unchecked. Tiny files in tmp_path, their MD5s patched in;
the real files (data/MNIST/raw, read only) where present.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_vae.core import data
from inverse_vae.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
REAL_RAW = ROOT / "data" / "MNIST" / "raw"
NAMES = list(data.MNIST_FILES)


def _tiny_mnist(root: Path, monkeypatch) -> dict[str, np.ndarray]:
    """Four small valid IDX files in root/MNIST/raw, with MNIST_FILES patched to their MD5s."""
    rng = np.random.default_rng(7)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([3, 1, 4, 1], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([5, 9], dtype=np.uint8),
    }
    raw = data.raw_folder(root)
    for name, array in arrays.items():
        data.write_idx(raw / name, array)
    _patch_md5s(raw, monkeypatch)
    return arrays


def _patch_md5s(raw: Path, monkeypatch) -> None:
    monkeypatch.setattr(data, "MNIST_FILES", {n: data.md5sum(raw / n) for n in NAMES})


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
    images = data.raw_folder(tmp_path) / "train-images-idx3-ubyte"
    verify, swapped = data.verify_mnist, []

    def verify_then_swap(raw_dir):
        result = verify(raw_dir)
        # Another valid IDX file of the same size takes the verified one's place.
        data.write_idx(images, 255 - arrays["train-images-idx3-ubyte"])
        swapped.append(True)
        return result

    monkeypatch.setattr(data, "verify_mnist", verify_then_swap)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has MD5 [0-9a-f]{32}, expected") as info:
        data.load_mnist(tmp_path, train=True)
    _one_line(info)
    assert swapped


def _idx(magic: int, dims: list[int], body: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + body


MALFORMED = {
    # name: (file, content, what the message says)
    "wrong magic": ("train-images-idx3-ubyte", _idx(0x0803 | 0x0100, [4, 28, 28], bytes(4 * 784)),
                    r"IDX magic 0x00000903, expected 0x00000803"),
    "labels magic in the images file": ("train-images-idx3-ubyte", _idx(0x0801, [4 * 784], bytes(4 * 784)),
                                        r"IDX magic 0x00000801, expected 0x00000803"),
    "not 28x28": ("train-images-idx3-ubyte", _idx(0x0803, [4, 14, 56], bytes(4 * 784)),
                  r"images of 14x56 pixels, expected 28x28"),
    "header declares more than the file holds": ("train-images-idx3-ubyte", _idx(0x0803, [5, 28, 28], bytes(4 * 784)),
                                                 r"3,152 bytes, but its header declares \(5, 28, 28\), 3,936 bytes"),
    "trailing bytes": ("train-labels-idx1-ubyte", _idx(0x0801, [4], bytes([3, 1, 4, 1, 0])),
                       r"13 bytes, but its header declares \(4,\), 12 bytes"),
    "too short for a header": ("train-labels-idx1-ubyte", b"\x00\x00\x08", r"3 bytes, too short for an IDX header"),
    "label out of range": ("train-labels-idx1-ubyte", _idx(0x0801, [4], bytes([3, 1, 14, 1])),
                           r"holds label 14; MNIST's labels are 0 to 9"),
    "counts differ": ("train-labels-idx1-ubyte", _idx(0x0801, [3], bytes([3, 1, 4])),
                      r"3 labels for the 4 images of .*train-images-idx3-ubyte"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_idx_file_with_a_matching_md5_is_one_line(tmp_path, monkeypatch, case):
    """What the MD5 list vouches for is still parsed with checks: a wrong list never reads out of bounds."""
    _tiny_mnist(tmp_path, monkeypatch)
    file, content, expected = MALFORMED[case]
    path = data.raw_folder(tmp_path) / file
    path.write_bytes(content)
    _patch_md5s(path.parent, monkeypatch)
    with pytest.raises(DataError, match=expected) as info:
        data.load_mnist(tmp_path, train=True)
    assert _one_line(info).startswith(f"MNIST file {path}")
    data.load_mnist(tmp_path, train=False)  # the other split's files are fine


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
    raw = data.raw_folder(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x08")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(tmp_path, train=False)
