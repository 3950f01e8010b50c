"""Checkpoint layouts: a model_90.pt in the original train.py's layout (its VAE, copied into the run folder,
inverts through notebook 03 when params name it; its last commit's deterministic autoencoder loads with
identical weights), and the compact layout of committed runs (weights, history, fingerprint)."""
import dataclasses
import json

import pytest
import torch

from inverse_vae.core.checkpoints import (
    checkpoint_layout,
    load_checkpoint,
    load_model,
    params_fingerprint,
    write_compact_checkpoint,
)
from inverse_vae.core.config import load_config
from inverse_vae.core.model import Autoencoder, build_model
from inverse_vae.core.training import train
from inverse_vae.errors import CheckpointError, TrainingError
from workflow.execute import execute


@pytest.mark.slow
def test_original_checkpoint_inverts_through_notebook_03(root, tmp_path, write_params):
    smoke = root / "params" / "smoke.yaml"
    torch.manual_seed(3)
    model = build_model(load_config(smoke))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    # A user's file is copied into the run folder: params paths may not leave reports/<run>/.
    checkpoint = tmp_path / "reports" / "original_ckpt" / "pretrained" / "model_90.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 90, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "history": {"train": [0.2] * 90, "validation": [0.2] * 90},  # one loss per epoch, as it appends
                "lr_scheduler_state_dict": scheduler.state_dict()}, checkpoint)

    raw = load_config(smoke).to_dict()  # merged onto its base: the copy lives where default.yaml is not
    raw["test"]["model_path"] = "pretrained/model_90.pt"
    raw["invert"]["n_prior"] = 100
    raw["data"].update(test_subset=200)
    params = write_params(raw, "original_ckpt")
    execute(root / "notebooks" / "03_invert.ipynb", params, tmp_path / "reports", root, say=lambda line: None)

    metrics = json.loads((tmp_path / "reports" / "original_ckpt" / "metrics" / "03_invert.json").read_text())
    # An untrained decoder has small pre-activations: float64 inversion is exact, as theory says.
    assert metrics["realizable"]["prior"]["float64"]["success_1e-6"] == 1.0
    assert metrics["realizable"]["prior"]["float64"]["nonfinite"] == 0
    assert metrics["real"]["original_clamp"]["nonfinite_latents"] == 0
    assert metrics["n_test"] == 200


# --- the original's last commit (the deterministic autoencoder), and the compact layout -----------------

def _original_deterministic_model_90(path, seed=0):
    """A model_90.pt as the original's last train.py writes it: its DeterministicModel (attributes `encoder`
    and `decoder`, built here with plain torch, not this study's code), one Adam step taken, the full
    checkpoint dict, and the weights rounded to 4 decimals as its save_model does (round_tensor)."""
    torch.manual_seed(seed)
    model = torch.nn.Module()
    model.encoder = torch.nn.Sequential(torch.nn.Linear(784, 32, bias=False))
    model.decoder = torch.nn.Sequential(torch.nn.Linear(32, 256, bias=False), torch.nn.LeakyReLU(),
                                        torch.nn.Linear(256, 784, bias=False))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    x = torch.rand(8, 784)
    torch.nn.MSELoss()(model.decoder(model.encoder(x)), x).backward()
    optimizer.step()
    rounded = {k: torch.round(v * 10 ** 4) / 10 ** 4 for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 90, "model_state_dict": rounded, "optimizer_state_dict": optimizer.state_dict(),
                "history": {"train": [0.05] * 90, "validation": [0.05] * 90},
                "lr_scheduler_state_dict": scheduler.state_dict()}, path)
    model.load_state_dict(rounded)
    return model


def test_original_deterministic_checkpoint_loads_with_identical_weights(root, tmp_path):
    path = tmp_path / "deterministic_pretrained" / "model_90.pt"
    original = _original_deterministic_model_90(path)
    assert checkpoint_layout(load_checkpoint(path)) == "full"
    model = load_model(load_config(root / "params" / "deterministic.yaml"), path)
    assert isinstance(model, Autoencoder)
    saved = torch.load(path, weights_only=True)["model_state_dict"]
    assert set(model.state_dict()) == set(saved) == {"encoder.0.weight", "decoder.0.weight", "decoder.2.weight"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        z, none = model.encode(x)
        assert none is None and torch.equal(z, original.encoder(x.reshape(4, -1)))
        assert torch.equal(model.decode(z).reshape(4, -1), original.decoder(z))


def test_deterministic_checkpoint_does_not_fit_the_vae_params(root, tmp_path):
    path = tmp_path / "model_90.pt"
    _original_deterministic_model_90(path)
    with pytest.raises(CheckpointError, match=r"does not fit this architecture: missing keys \['decoder.4.weight'"):
        load_model(load_config(root / "params" / "default.yaml"), path)


def _trained_tiny(tiny_run, epochs=2):
    run = dataclasses.replace(tiny_run, config=tiny_run.config.replace(train={"train_epochs": epochs}))
    g = torch.Generator().manual_seed(0)
    x, v = (torch.rand(64, 1, 28, 28, generator=g) > 0.7).float(), (torch.rand(32, 1, 28, 28, generator=g) > 0.7).float()
    return run, x, v, train(run, x, v, progress=False)


@pytest.mark.slow
def test_compact_checkpoint_keeps_weights_history_and_fingerprint(tiny_run, tmp_path):
    run, _, _, result = _trained_tiny(tiny_run)
    full_path = run.checkpoints / "model_2.pt"
    compact_path = write_compact_checkpoint(full_path, tmp_path / "compact" / "model_2.pt")
    full, compact = load_checkpoint(full_path), load_checkpoint(compact_path)
    assert checkpoint_layout(full) == "full" and checkpoint_layout(compact) == "compact"
    assert set(compact) == {"epoch", "model_state_dict", "history", "params_fingerprint", "train_seconds",
                            "tensor_digest", "values_digest"}
    assert compact["epoch"] == 2 and compact["history"] == result.history == full["history"]
    assert compact["params_fingerprint"] == params_fingerprint(run.config) == full["params_fingerprint"]
    assert compact["train_seconds"] == full["train_seconds"]
    assert all(torch.equal(compact["model_state_dict"][k], v) for k, v in full["model_state_dict"].items())
    assert compact_path.stat().st_size < full_path.stat().st_size / 2  # no Adam moments
    loaded = load_model(run.config, compact_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in result.model.state_dict().items())
    assert write_compact_checkpoint(compact_path) == compact_path  # compact again, in place: the same content
    assert load_checkpoint(compact_path)["tensor_digest"] == compact["tensor_digest"]


@pytest.mark.slow
def test_training_ends_at_a_final_compact_checkpoint_and_refuses_to_continue_past_it(tiny_run):
    run, x, v, result = _trained_tiny(tiny_run)
    final = write_compact_checkpoint(run.checkpoints / "model_2.pt")  # in place, as for a committed run
    written = final.read_bytes()
    again = train(run, x, v, progress=False)  # nothing left to train: no epoch runs, nothing is rewritten
    assert again.start_epoch == 3 and again.epochs == 2 and again.history == result.history
    assert again.checkpoint == final and final.read_bytes() == written
    assert all(torch.equal(again.model.state_dict()[k], w) for k, w in result.model.state_dict().items())
    longer = dataclasses.replace(run, config=run.config.replace(train={"train_epochs": 4}))
    with pytest.raises(TrainingError) as info:
        train(longer, x, v, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(final)), message
    assert all(s in message for s in ("compact checkpoint", "epoch 2", "train.train_epochs 4")), message


def test_compact_writer_refuses_a_bare_state_dict(tiny_run, tmp_path):
    torch.save(build_model(tiny_run.config).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"weights\.pt: cannot be written as a compact checkpoint, it lacks "
                                              r"epoch, history$"):
        write_compact_checkpoint(tmp_path / "weights.pt", tmp_path / "compact.pt")
    assert not (tmp_path / "compact.pt").exists()


@pytest.mark.slow
def test_compact_writer_stamps_no_fingerprint_in_and_refuses_another_configs(tiny_run, tmp_path):
    run, _, _, result = _trained_tiny(tiny_run)
    old = load_checkpoint(run.checkpoints / "model_2.pt")  # as a checkpoint from before fingerprints
    del old["params_fingerprint"], old["tensor_digest"], old["values_digest"]
    torch.save(old, tmp_path / "old.pt")
    unstamped = load_checkpoint(write_compact_checkpoint(tmp_path / "old.pt", tmp_path / "unstamped.pt"))
    assert "params_fingerprint" not in unstamped and checkpoint_layout(unstamped) == "compact"
    # nothing shows which params trained it: a config given does not stamp its fingerprint in
    kept = load_checkpoint(write_compact_checkpoint(tmp_path / "old.pt", tmp_path / "kept.pt", run.config))
    assert "params_fingerprint" not in kept
    assert all(torch.equal(kept["model_state_dict"][k], v) for k, v in result.model.state_dict().items())
    compact = load_checkpoint(write_compact_checkpoint(run.checkpoints / "model_2.pt", tmp_path / "own.pt", run.config))
    assert compact["params_fingerprint"] == params_fingerprint(run.config)  # its own fingerprint, kept
    other = run.config.replace(train={"alpha": 0.5})
    with pytest.raises(CheckpointError, match=r"own\.pt: trained with other params than the config given "
                                              r"\(changed: train\.alpha\); not rewritten$"):
        write_compact_checkpoint(tmp_path / "own.pt", config=other)
    assert load_checkpoint(tmp_path / "own.pt")["tensor_digest"] == compact["tensor_digest"]
