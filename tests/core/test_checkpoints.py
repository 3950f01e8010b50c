"""Checkpoints: round trip, the original train.py layout, and refusals of bad files."""
import os

import pytest
import torch

from inverse_vae.core.checkpoints import load_checkpoint, load_model, save_checkpoint
from inverse_vae.core.model import build_model
from inverse_vae.errors import CheckpointError


@pytest.fixture
def config(tiny_run):
    return tiny_run.config


def _original_layout(model, epoch=90):
    """What the original train.py's save_model writes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    return {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
            "history": {"train": [0.3] * epoch, "validation": [0.31] * epoch},  # one loss per epoch
            "lr_scheduler_state_dict": scheduler.state_dict()}


def test_original_layout_round_trips(config, tmp_path):
    torch.manual_seed(1)
    model = build_model(config)
    path = tmp_path / "model_90.pt"
    torch.save(_original_layout(model), path)  # written as the original code does, not via our saver
    loaded = load_model(config, path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert load_checkpoint(path)["epoch"] == 90


def test_bare_state_dict_is_accepted(config, tmp_path):
    model = build_model(config)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    assert set(load_checkpoint(tmp_path / "weights.pt")["model_state_dict"]) == set(model.state_dict())


def test_missing_checkpoint_says_which_notebook_to_run(tmp_path):
    with pytest.raises(CheckpointError, match="run notebooks/01_train.ipynb"):
        load_checkpoint(tmp_path / "model_90.pt")


def test_truncated_checkpoint_is_refused(config, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(_original_layout(build_model(config)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "executed"
    Payload.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "surprise": Payload()}, path)
    with pytest.raises(CheckpointError, match="nothing from it was executed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_other_architecture_names_each_mismatched_key(config, tmp_path):
    small = config.replace(model={"architecture": {
        "encoder": {"conv": [{"Linear": {"args": [784, 64], "bias": False}}, {"Tanh": None}],
                    "mean": [{"Linear": {"args": [64, 32], "bias": False}}],
                    "log_var": [{"Linear": {"args": [64, 32], "bias": False}}]},
        "decoder": [{"Linear": {"args": [32, 784], "bias": False}}, {"Sigmoid": None}]}})
    path = tmp_path / "small.pt"
    torch.save({"model_state_dict": build_model(small).state_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(config, path)
    message = str(info.value)
    assert "encoder_conv.0.weight (64, 784) vs model (512, 784)" in message
    assert "missing keys ['decoder.2.weight'" in message


def test_failed_write_leaves_previous_checkpoint_intact(config, tmp_path, monkeypatch):
    path = tmp_path / "model_2.pt"
    save_checkpoint({"model_state_dict": build_model(config).state_dict(), "epoch": 2}, path)
    before = path.read_bytes()

    def crash(fd):
        raise KeyboardInterrupt  # a kill in the middle of the write: the bytes are in the temporary file, not synced

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 3}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model_2.pt"]  # no temporary file left
