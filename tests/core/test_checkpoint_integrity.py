"""Checkpoint integrity, third pass (issue #27): the digests cover everything a checkpoint holds, the zip's
CRC-32s are checked (torch.load does not), its epoch agrees with its name and its history, and a zip entry
declaring more than the file holds is refused in one line.

Before: the digest covered the tensors only, so one changed epoch byte made training resume at the
wrong epoch and one bit of a history float changed the reported final validation loss, unnoticed.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from inverse_vae.core import checkpoints
from inverse_vae.core.checkpoints import load_checkpoint, save_checkpoint, tensor_digest
from inverse_vae.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(ROOT.glob("reports/*/checkpoints/model_90.pt"))
LAST_VALIDATION = 0.1234567891011  # a float whose pickled bytes are easy to find in the file


FINGERPRINT = {"model.architecture.decoder": [{"Linear": {"args": [4, 16], "bias": False}}, {"Tanh": None}],
               "seed": 0, "train.alpha": 0.1, "train.optim.learning_rate": 0.001}


def _full_state(epoch: int = 4) -> dict:
    """What training writes at `epoch` (the layout, on a small model): weights, Adam and StepLR state after
    a step, per-epoch history, the seconds so far and a params fingerprint."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16, bias=False), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    sum(p.square().sum() for p in model.parameters()).backward()
    optimizer.step()
    scheduler.step()
    validation = [0.3 - i / 100 for i in range(epoch - 1)] + [LAST_VALIDATION]
    return {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
            "history": {"train": [0.31 - i / 100 for i in range(epoch)], "validation": validation},
            "lr_scheduler_state_dict": scheduler.state_dict(), "train_seconds": 12.5,
            "params_fingerprint": FINGERPRINT}


def _one_line(info, path) -> str:
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def _edit_bytes(path: Path, find: bytes, replace: bytes) -> None:
    content = path.read_bytes()
    assert content.count(find) == 1, f"{find!r} found {content.count(find)} times"
    path.write_bytes(content.replace(find, replace))


# --- the digest covers every value ----------------------------------------------------------------

def test_a_saved_checkpoint_carries_a_digest_of_all_it_holds_and_loads_back(tmp_path):
    state = _full_state()
    path = save_checkpoint(state, tmp_path / "model_4.pt")
    loaded = load_checkpoint(path)
    assert len(loaded["values_digest"]) == 64 and loaded["values_digest"] == checkpoints._values_digest(loaded)
    assert loaded["tensor_digest"] == tensor_digest(state)  # kept, so readers of the tensor-only form still check it
    assert loaded["history"] == state["history"] and loaded["epoch"] == 4
    assert loaded["optimizer_state_dict"]["param_groups"] == state["optimizer_state_dict"]["param_groups"]
    # Saving what was loaded (write_compact_checkpoint does) digests afresh, with the same result.
    again = load_checkpoint(save_checkpoint(loaded, tmp_path / "again" / "model_4.pt"))
    assert again["values_digest"] == loaded["values_digest"]


def test_one_flipped_bit_of_a_history_float_is_refused(tmp_path):
    path = save_checkpoint(_full_state(), tmp_path / "model_4.pt")
    packed = b"G" + struct.pack(">d", LAST_VALIDATION)  # how pickle writes a float
    _edit_bytes(path, packed, packed[:-1] + bytes([packed[-1] ^ 0x01]))
    assert torch.load(path, weights_only=True)["history"]["validation"][-1] != LAST_VALIDATION  # torch: no word
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its values other than tensors" in _one_line(info, path)


def test_one_changed_epoch_byte_is_refused(tmp_path):
    # Named so that the name check does not apply: the digest alone catches it.
    path = save_checkpoint(_full_state(), tmp_path / "latest.pt")
    _edit_bytes(path, b"X\x05\x00\x00\x00epochq\x01K\x04", b"X\x05\x00\x00\x00epochq\x01K\x03")
    assert torch.load(path, weights_only=True)["epoch"] == 3
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its values other than tensors" in _one_line(info, path)


EDITS = {
    "epoch": lambda s: s.__setitem__("epoch", 3),
    "a history value": lambda s: s["history"]["validation"].__setitem__(-1, 0.01),
    "a history entry added and the epoch with it": lambda s: (s["history"]["train"].append(0.1),
                                                             s["history"]["validation"].append(0.1),
                                                             s.__setitem__("epoch", 5)),
    "the params fingerprint": lambda s: s["params_fingerprint"].__setitem__("train.alpha", 0.5),
    "the params fingerprint removed": lambda s: s.pop("params_fingerprint"),
    "train_seconds": lambda s: s.__setitem__("train_seconds", 1.0),
    "the optimizer's learning rate": lambda s: s["optimizer_state_dict"]["param_groups"][0].__setitem__("lr", 1.0),
    "the scheduler's epoch": lambda s: s["lr_scheduler_state_dict"].__setitem__("last_epoch", 0),
    "a key added": lambda s: s.__setitem__("note", "hello"),
    "an int made a float": lambda s: s.__setitem__("epoch", 4.0),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_value_outside_the_tensors_is_refused(tmp_path, edit):
    path = save_checkpoint(_full_state(), tmp_path / "edited.pt")
    state = torch.load(path, weights_only=True)
    EDITS[edit](state)
    torch.save(state, path)  # the digests written before the edit travel with it
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its values other than tensors" in _one_line(info, path)


def test_a_damaged_tensor_still_says_so(tmp_path):
    path = save_checkpoint(_full_state(), tmp_path / "model_4.pt")
    state = torch.load(path, weights_only=True)
    state["model_state_dict"]["0.weight"][0, 0] += 1
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its tensors no longer match the digest" in _one_line(info, path)


# --- files written before: the tensor-only digest -------------------------------------------------

@pytest.mark.skipif(not COMMITTED, reason="no committed checkpoints")
def test_the_committed_checkpoints_with_the_tensor_only_digest_still_load_unchanged():
    old_form = 0
    legacy_content = 0
    for path in COMMITTED:  # most were written before the values digest; constrained's carries an older content_digest
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        state = load_checkpoint(path)
        old_form += "values_digest" not in state and len(state["tensor_digest"]) == 64
        legacy_content += "content_digest" in state
        assert state["epoch"] == 90 and all(len(v) == 90 for v in state["history"].values()), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before, path
    assert old_form >= 1 and legacy_content >= 1  # the older forms are still among them, and load


def test_a_flipped_bit_of_a_history_float_in_an_old_form_file_is_refused_by_its_crc(tmp_path):
    # No values digest in it: the zip's CRC-32 of data.pkl, which torch.load does not check, catches it.
    path = _old_form(_full_state(), tmp_path / "model_4.pt")
    load_checkpoint(path)
    packed = b"G" + struct.pack(">d", LAST_VALIDATION)
    _edit_bytes(path, packed, packed[:-1] + bytes([packed[-1] ^ 0x01]))
    assert torch.load(path, weights_only=True)["history"]["validation"][-1] != LAST_VALIDATION  # torch: no word
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its values other than tensors" in _one_line(info, path)


def _old_form(state: dict, path: Path) -> Path:
    """A file as this study wrote it before the content digest: the tensor digest only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "tensor_digest": tensor_digest(state)}, path)
    return path


def test_an_old_form_file_with_an_epoch_its_name_contradicts_is_refused(tmp_path):
    state = _full_state()
    load_checkpoint(_old_form(state, tmp_path / "model_4.pt"))  # consistent: loads
    edited = {**state, "epoch": 3, "history": {k: v[:3] for k, v in state["history"].items()}}
    path = _old_form(edited, tmp_path / "model_4.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == (f"{path}: holds epoch 3 but is named model_4.pt (renamed, or its epoch altered "
                                     f"on disk): rename it model_3.pt if epoch 3 is right, or retrain")


@pytest.mark.parametrize("digest", [True, False], ids=["old digest", "no digest (the original train.py)"])
def test_history_lists_must_hold_one_entry_per_epoch(tmp_path, digest):
    state = _full_state()
    state["history"]["validation"] = state["history"]["validation"][:-1]  # the last epoch's loss lost
    path = tmp_path / "model_4.pt"
    _old_form(state, path) if digest else torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == (f"{path}: history['validation'] has 3 entries but the checkpoint holds epoch 4 "
                                     f"(one per epoch): truncated or altered; retrain or copy it again")


@pytest.mark.parametrize("epoch, shown", [("4", "str '4'"), (4.0, "float 4.0"), (True, "bool True"), (-1, "int -1")])
def test_an_epoch_that_is_not_a_whole_number_is_refused(tmp_path, epoch, shown):
    path = save_checkpoint({**_full_state(), "epoch": epoch}, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == f"{path}: epoch is {shown}, not a whole number of epochs >= 0"


def test_a_history_that_is_not_per_epoch_lists_is_refused(tmp_path):
    path = save_checkpoint({**_full_state(), "history": [0.1] * 4}, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == f"{path}: history is a list, not a mapping of per-epoch lists"


def test_a_checkpoint_named_for_one_epoch_holding_another_is_refused_whatever_its_digest(tmp_path):
    path = save_checkpoint(_full_state(epoch=4), tmp_path / "model_5.pt")
    with pytest.raises(CheckpointError, match=r"holds epoch 4 but is named model_5\.pt") as info:
        load_checkpoint(path)
    _one_line(info, path)


# --- declared sizes: an entry declaring more than the file holds is refused in one line ---------------------

def _declare(path: Path, size: int, *, compressed: bool) -> None:
    """Make data/0's central directory entry (and, `compressed`, its local header too) declare `size` bytes."""
    with zipfile.ZipFile(path) as zf:
        member = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    content = bytearray(path.read_bytes())
    central = content.rfind(b"PK\x01\x02", 0, content.rfind(member.filename.encode()))
    assert central > member.header_offset
    content[central + 24:central + 28] = struct.pack("<I", size)  # uncompressed size
    if compressed:
        content[central + 20:central + 24] = struct.pack("<I", size)
        content[member.header_offset + 18:member.header_offset + 26] = struct.pack("<II", size, size)
    path.write_bytes(bytes(content))
    with zipfile.ZipFile(path) as zf:
        assert max(i.file_size for i in zf.infolist()) == size


def test_a_zip_entry_declaring_more_than_the_file_holds_is_refused_before_torch_reads_it(tmp_path, monkeypatch):
    path = tmp_path / "model_4.pt"
    save_checkpoint({"epoch": 4, "model_state_dict": {"w": torch.ones(3)}}, path)
    _declare(path, 0x7FFFFFFF, compressed=True)  # 2 GiB, in a file of a few KB
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on a file the CRC pass refuses"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == f"{path}: not a readable torch checkpoint (truncated or foreign file): EOFError"


def test_a_stored_entry_whose_declared_size_disagrees_is_refused_by_torchs_reader(tmp_path):
    # Only the uncompressed size changed: the CRC pass reads the stored bytes whole; torch's reader (miniz) checks a
    # stored entry's two sizes against each other and refuses it before reading it (no 2 GiB buffer: measured).
    path = tmp_path / "model_4.pt"
    save_checkpoint({"epoch": 4, "model_state_dict": {"w": torch.ones(3)}}, path)
    _declare(path, 0x7FFFFFFF, compressed=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert _one_line(info, path) == f"{path}: not a readable torch checkpoint (truncated or foreign file): RuntimeError"
