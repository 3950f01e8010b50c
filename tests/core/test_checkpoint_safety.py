"""Checkpoints that must not be trusted are refused or passed over, and old weights never pass as a new run's.

Every checkpoint the study writes records the params that shaped it and a digest of its tensors;
resuming with other params, a damaged file, weights that are not finite floats, a full disk and
an intermediate checkpoint handed to notebooks 02-05 each end in one line saying what to do.
"""
import dataclasses
import errno
import os
import re
import tempfile
from pathlib import Path

import pytest
import torch

from inverse_vae.core.checkpoints import (
    _FINGERPRINT_EXCLUDED,
    fingerprint_changes,
    load_checkpoint,
    params_fingerprint,
    save_checkpoint,
)
from inverse_vae.core.model import build_model
from inverse_vae.core.training import train
from inverse_vae.errors import CheckpointError, StudyError
from inverse_vae.runs.run import open_run
from inverse_vae.study import shared

ROOT = Path(__file__).resolve().parents[2]


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()


X, V = _images(128, 0), _images(32, 1)


def _with(run, **updates):
    return dataclasses.replace(run, config=run.config.replace(**updates))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _original_layout(model, epoch):
    """What the original train.py's save_model writes: no fingerprint, no digest."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    return {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
            "history": {"train": [0.3] * epoch, "validation": [0.31] * epoch},
            "lr_scheduler_state_dict": scheduler.state_dict()}


def _one_line(exc_info, starts):
    message = str(exc_info.value)
    assert "\n" not in message and message.startswith(str(starts)), message
    return message


def _flip_a_byte_inside(path, tensor):
    """Flip one bit inside `tensor`'s bytes in the file (torch.load does not check the zip's CRCs)."""
    data = bytearray(path.read_bytes())
    at = bytes(data).find(tensor.numpy().tobytes()[:64])
    assert at > 0
    data[at + 9] ^= 0x01
    path.write_bytes(bytes(data))


# --- what a checkpoint records ------------------------------------------------------------------

@pytest.mark.slow
def test_checkpoints_record_the_params_fingerprint_and_a_tensor_digest(tiny_run):
    train(tiny_run, X, V, progress=False)
    state = load_checkpoint(tiny_run.checkpoints / "model_4.pt")
    fingerprint = state["params_fingerprint"]
    assert fingerprint == params_fingerprint(tiny_run.config)
    assert fingerprint["train.optim.learning_rate"] == 1e-3 and fingerprint["train.alpha"] == 0.1
    assert fingerprint["seed"] == 0 and fingerprint["data.train_subset"] == 2000 and "data.val_fraction" in fingerprint
    assert fingerprint["model.architecture.decoder"][0] == {"Linear": {"args": [32, 256], "bias": False}}
    assert not any(k.startswith(_FINGERPRINT_EXCLUDED) for k in fingerprint)
    assert "data.root" not in fingerprint and "test.model_path" not in fingerprint and "device" not in fingerprint
    assert len(state["tensor_digest"]) == 64
    for key in ("epoch", "model_state_dict", "optimizer_state_dict", "history", "lr_scheduler_state_dict"):
        assert key in state  # the original layout, extra keys beside it


def test_the_committed_checkpoint_carries_the_default_params_fingerprint_and_passes_the_runner():
    run = open_run(ROOT / "params" / "default.yaml", root=ROOT)
    state = load_checkpoint(run.model_file)
    assert state["epoch"] == 90 and "params_fingerprint" in state and "optimizer_state_dict" not in state  # compact
    assert not fingerprint_changes(state, run.config)
    shared.trained_model(run)


@pytest.mark.slow
def test_a_final_checkpoint_without_fingerprint_still_passes_the_runner(tiny_run):
    # the original's train.py writes none: its fingerprint is unknown, and accepted
    train(tiny_run, X, V, progress=False)
    final = tiny_run.checkpoints / f"model_{tiny_run.config.train.train_epochs}.pt"
    state = load_checkpoint(final)
    state.pop("params_fingerprint")
    state.pop("values_digest")  # which covers the fingerprint: without it, as a file from before it
    torch.save(state, final)
    assert fingerprint_changes(load_checkpoint(final), tiny_run.config) is None
    shared.trained_model(tiny_run)


# --- resuming -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("updates, named", [
    ({"train": {"alpha": 0.5, "optim": {"name": "adam", "learning_rate": 0.01, "others": None}}},
     "changed: train.alpha, train.optim.learning_rate"),
    ({"seed": 7}, "changed: seed)"),
    ({"data": {"val_fraction": 0.2}}, "changed: data.val_fraction)"),
])
def test_checkpoints_of_other_params_are_set_aside_and_training_starts_afresh(tiny_run, updates, named):
    train(tiny_run, X, V, progress=False, stop_after_epoch=2)
    before = (tiny_run.checkpoints / "model_2.pt").read_bytes()
    said = []
    changed = train(_with(tiny_run, **updates), X, V, progress=False, stop_after_epoch=2, say=said.append)
    assert changed.start_epoch == 1 and any(named.rstrip(")") in line and "set aside" in line for line in said), said
    kept = list((tiny_run.dir.parent / ".old").glob("run-checkpoints-*/model_2.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == before  # nothing deleted
    assert fingerprint_changes(load_checkpoint(tiny_run.checkpoints / "model_2.pt"), _with(tiny_run, **updates).config) == []


@pytest.mark.slow
def test_settings_that_do_not_shape_the_weights_resume_exactly(tiny_run, tmp_path):
    """plot_epochs and train_epochs are outside the fingerprint: a 2-epoch run extended
    to 4 epochs gives the weights of a 4-epoch run, bit for bit."""
    whole = train(dataclasses.replace(tiny_run, dir=tmp_path / "whole"), X, V, progress=False)
    train(_with(tiny_run, train={"train_epochs": 2, "plot_epochs": 1}), X, V, progress=False)
    said = []
    extended = train(tiny_run, X, V, progress=False, say=said.append)
    assert said == []
    assert extended.start_epoch == 3 and extended.history == whole.history
    a, b = _weights(whole.model), _weights(extended.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_checkpoint_without_fingerprint_resumes_with_a_warning_only_when_unfinished(tiny_run):
    torch.manual_seed(0)
    tiny_run.checkpoints.mkdir(parents=True)
    torch.save(_original_layout(build_model(tiny_run.config), 4), tiny_run.checkpoints / "model_4.pt")
    said = []
    assert train(tiny_run, X, V, progress=False, say=said.append).start_epoch == 5  # final epoch: nothing to train
    assert said == []
    (tiny_run.checkpoints / "model_4.pt").unlink()
    torch.save(_original_layout(build_model(tiny_run.config), 2), tiny_run.checkpoints / "model_2.pt")
    assert train(tiny_run, X, V, progress=False, say=said.append).start_epoch == 3
    assert len(said) == 1 and "model_2.pt has no params fingerprint" in said[0]


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tiny_run, tmp_path):
    whole = train(dataclasses.replace(tiny_run, dir=tmp_path / "whole"), X, V, progress=False)
    first = train(tiny_run, X, V, progress=False)
    latest = tiny_run.checkpoints / "model_4.pt"
    _flip_a_byte_inside(latest, first.model.state_dict()["decoder.4.weight"])
    said = []
    resumed = train(tiny_run, X, V, progress=False, say=said.append)
    assert len(said) == 1 and re.search(r"model_4.pt: damaged.*passing it over for the checkpoint before it", said[0])
    assert resumed.start_epoch == 3 and resumed.history == whole.history
    a, b = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    load_checkpoint(latest)  # rewritten whole


# --- refusals on load ---------------------------------------------------------------------------

def _saved(tmp_path, config, edit=None, name="model_4.pt"):
    torch.manual_seed(0)
    weights = build_model(config).state_dict()
    if edit is not None:
        edit(weights)
    path = tmp_path / name
    save_checkpoint({"epoch": 4, "model_state_dict": weights}, path)
    return path, weights


def test_a_flipped_byte_inside_tensor_data_is_refused(tiny_run, tmp_path):
    path, weights = _saved(tmp_path, tiny_run.config)
    assert torch.equal(load_checkpoint(path)["model_state_dict"]["decoder.0.weight"], weights["decoder.0.weight"])
    _flip_a_byte_inside(path, weights["decoder.0.weight"])
    assert torch.load(path, weights_only=True)["epoch"] == 4  # torch itself loads it without a word
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged, its tensors no longer match the digest" in _one_line(info, path)


@pytest.mark.parametrize("edit, expected", [
    (lambda w: w["decoder.2.weight"].__setitem__((0, 0), float("nan")), "decoder.2.weight holds 1 non-finite values"),
    (lambda w: w["encoder_mean.0.weight"].__setitem__((1, 1), float("inf")), "encoder_mean.0.weight holds 1 non-finite"),
    (lambda w: w.__setitem__("decoder.0.weight", (w["decoder.0.weight"] * 100).to(torch.int64)),
     "decoder.0.weight holds torch.int64 values"),
    (lambda w: w.__setitem__("decoder.0.weight", w["decoder.0.weight"].to(torch.complex64)),
     "decoder.0.weight holds torch.complex64 values"),
])
def test_weights_that_are_not_finite_real_floats_are_refused(tiny_run, tmp_path, edit, expected):
    path, _ = _saved(tmp_path, tiny_run.config, edit)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert expected in _one_line(info, path)


def test_a_text_file_is_refused_in_one_clear_line(tmp_path):
    path = tmp_path / "model_90.pt"
    path.write_text("epoch: 90\nthese are not weights\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "not a readable torch checkpoint" in _one_line(info, path) and "text file" in str(info.value)


# --- a full disk --------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_naming_the_file(tiny_run, tmp_path, monkeypatch):
    path, _ = _saved(tmp_path, tiny_run.config)
    before = path.read_bytes()

    def on_a_full_disk(prefix="", suffix="", dir=None):
        # The temporary file's writes go to /dev/full, which fails them with ENOSPC as a full disk does.
        placeholder = Path(dir) / f"{prefix}full{suffix}"
        placeholder.write_bytes(b"")
        return os.open("/dev/full", os.O_WRONLY), str(placeholder)

    monkeypatch.setattr(tempfile, "mkstemp", on_a_full_disk)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(load_checkpoint(path), path)
    assert "the disk is full (no space left on device)" in _one_line(info, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["no space", "quota"])
def test_a_short_write_is_reported_as_no_space(tmp_path, monkeypatch, code):
    # torch.save serializes into memory: the one disk write is the atomic writer's, failing here as a full disk does.
    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    path = tmp_path / "model_2.pt"
    with pytest.raises(CheckpointError) as info:
        save_checkpoint({"epoch": 2}, path)
    assert "no space left on device" in _one_line(info, path)
    assert isinstance(info.value, OSError)  # a failed write like any other (core.files.WriteError)
    assert not any(tmp_path.iterdir())


# --- notebooks 02-05 and test.model_path --------------------------------------------------------

def _checkpoint_for(run, epoch, config=None, name=None):
    torch.manual_seed(0)
    path = run.dir / "checkpoints" / (name or f"model_{epoch}.pt")
    state = {"epoch": epoch, "model_state_dict": build_model(run.config).state_dict()}
    if config is not False:
        state["params_fingerprint"] = params_fingerprint(config or run.config)
    save_checkpoint(state, path)
    return path


def test_an_intermediate_checkpoint_is_refused_unless_allowed(tiny_run):
    run = _with(tiny_run, test={"model_path": "checkpoints/model_2.pt"})
    _checkpoint_for(run, 2)
    with pytest.raises(StudyError) as info:
        shared.trained_model(run)
    message = _one_line(info, "")
    assert "holds epoch 2, not train.train_epochs (4)" in message and "test.allow_intermediate: true" in message
    shared.trained_model(_with(run, test={"allow_intermediate": True}))


def test_the_final_checkpoint_passes_and_one_from_other_params_is_refused(tiny_run):
    _checkpoint_for(tiny_run, 4)
    shared.trained_model(tiny_run)
    _checkpoint_for(tiny_run, 4, config=tiny_run.config.replace(train={"alpha": 0.5}))
    with pytest.raises(StudyError) as info:
        shared.trained_model(tiny_run)
    assert "trained with other params (changed: train.alpha)" in _one_line(info, "")


def test_a_foreign_checkpoint_past_train_epochs_is_accepted_but_not_one_of_ours(tiny_run):
    # A checkpoint named model_<k>.pt must hold epoch k (load_checkpoint): test.model_path names it.
    run = _with(tiny_run, test={"model_path": "checkpoints/model_90.pt"})
    _checkpoint_for(run, 90, config=False)  # the original's model_90.pt, say
    shared.trained_model(run)
    _checkpoint_for(run, 90)
    with pytest.raises(StudyError, match=r"holds epoch 90, not train\.train_epochs \(4\)"):
        shared.trained_model(run)
