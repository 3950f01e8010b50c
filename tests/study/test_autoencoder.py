"""The deterministic autoencoder of the original's last commit: accepted, built with its keys, trained on
MSE alone as its train.py did, and bad model/loss combinations refused in one line."""
import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
import yaml

from inverse_vae.core.config import load_config
from inverse_vae.core.losses import original_loss
from inverse_vae.core.model import VAE, Autoencoder, build_model
from inverse_vae.core.training import _batch_loss, _epoch_generator, train
from inverse_vae.errors import ParamsError
from inverse_vae.runs.run import load_checked_config, open_run


@pytest.fixture
def det_raw(root) -> dict:
    return yaml.safe_load((root / "params" / "deterministic.yaml").read_text())


@pytest.fixture
def det_run(root, tmp_path):
    """params/deterministic.yaml on the CPU, shrunk to seconds."""
    run = open_run(root / "params" / "deterministic.yaml", root=root, say=lambda *_: None)
    config = run.config.replace(device="cpu", train={"train_epochs": 3, "batch_size": 32, "plot_epochs": 1})
    return dataclasses.replace(run, config=config, dir=tmp_path / "run")


def _images(n, seed):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_deterministic_params_keep_the_original_values(root):
    config = load_checked_config(root / "params" / "deterministic.yaml")
    t = config.train
    assert t.loss == ("mseloss",) and not t.variational and t.reconstruction_loss == "mseloss"
    assert (t.batch_size, t.train_epochs, t.optim.name, t.optim.learning_rate, t.alpha) == (1024, 90, "adam", 1e-3, 0.1)
    assert dict(t.lr_scheduler.others) == {"step_size": 50, "gamma": 0.1}
    arch = config.model.architecture
    assert not arch.variational and arch.encoder.mean is None and arch.encoder.log_var is None
    assert [s.name for s in arch.encoder.conv] == ["Linear"]
    assert [s.name for s in arch.decoder] == ["Linear", "LeakyReLU", "Linear"]
    assert list(arch.parts()) == ["encoder.conv", "decoder"]
    assert config.replace(seed=1).model == config.model  # to_dict and back keep the absent heads absent


def test_autoencoder_has_the_original_keys_and_encode_returns_z_and_none(root):
    model = build_model(load_config(root / "params" / "deterministic.yaml"))
    assert isinstance(model, Autoencoder) and not model.variational and model.latent_dim == 32
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        "encoder.0.weight": (32, 784), "decoder.0.weight": (256, 32), "decoder.2.weight": (784, 256)}
    assert isinstance(model.decoder, nn.Sequential)
    assert [type(m).__name__ for m in model.decoder] == ["Linear", "LeakyReLU", "Linear"]
    x = _images(5, 0)
    z, log_var = model.encode(x)
    assert log_var is None and z.shape == (5, 32)
    assert torch.equal(z, x.reshape(5, -1) @ model.encoder[0].weight.T)
    out, z2, none = model(x, torch.Generator().manual_seed(0))
    assert none is None and torch.equal(z2, z) and out.shape == (5, 1, 28, 28)
    assert torch.equal(out, model.decode(z))
    assert torch.equal(model(x)[0], out)  # no noise: the same image gives the same output


def test_the_vae_is_still_the_vae(root):
    model = build_model(load_config(root / "params" / "default.yaml"))
    assert isinstance(model, VAE) and model.variational and model.latent_dim == 32
    mean, log_var = model.encode(_images(2, 0))
    assert mean.shape == log_var.shape == (2, 32)


def test_autoencoder_loss_is_the_originals_mse_alone():
    """The original's last train.py: loss = nn.MSELoss()(output, target), the mean over every pixel of the batch."""
    g = torch.Generator().manual_seed(1)
    out, target = torch.randn(4, 1, 28, 28, generator=g) * 2, torch.rand(4, 1, 28, 28, generator=g)
    loss, rec, reg = original_loss(out, target, torch.zeros(4, 32), None, alpha=0.1, kind="mseloss")
    assert reg is None and loss is rec
    assert loss.item() == pytest.approx(nn.MSELoss()(out, target).item(), rel=1e-6)
    assert loss.item() == pytest.approx(((out - target) ** 2).sum().item() / (4 * 784), rel=1e-6)


def test_autoencoder_batch_loss_draws_no_random_numbers(det_run):
    torch.manual_seed(0)
    model = build_model(det_run.config)
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    x = _images(8, 2)
    loss = _batch_loss(model, x, g, alpha=0.1, kind="mseloss")
    assert torch.equal(g.get_state(), before)
    assert loss.item() == pytest.approx(nn.MSELoss()(model.decode(model.encode(x)[0]), x).item(), rel=1e-6)


def _original_style_training(config, x_train):
    """The original's last train.py loop (nn.MSELoss, Adam, StepLR, drop_last), on our batch order."""
    t = config.train
    torch.manual_seed(config.seed)
    model = build_model(config)  # the same initial weights as train()'s
    optimizer = torch.optim.Adam(model.parameters(), lr=t.optim.learning_rate)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, **t.lr_scheduler.others)
    criterion = nn.MSELoss()
    for epoch in range(1, t.train_epochs + 1):
        order = torch.randperm(len(x_train), generator=_epoch_generator(config.seed, epoch, x_train.device))
        for i in range(len(x_train) // t.batch_size):
            x = x_train[order[i * t.batch_size:(i + 1) * t.batch_size]]
            loss = criterion(model.decode(model.encode(x)[0]), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model


@pytest.mark.slow
def test_training_matches_the_original_loop_and_repeats(det_run, tmp_path):
    x, v = _images(160, 0), _images(40, 1)
    result = train(det_run, x, v, progress=False)
    assert result.epochs == 3 and all(torch.isfinite(torch.tensor(result.history["train"])))
    reference = _original_style_training(det_run.config, x)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the validation number: mean over batches of nn.MSELoss, as the original's
        expected = torch.stack([nn.MSELoss()(result.model(b)[0], b) for b in v.split(32)]).mean().item()
    assert result.history["validation"][-1] == pytest.approx(expected, rel=1e-5)
    again = train(dataclasses.replace(det_run, dir=tmp_path / "again"), x, v, progress=False)
    assert all(torch.equal(again.model.state_dict()[k], w) for k, w in result.model.state_dict().items())


@pytest.mark.slow
def test_autoencoder_run_resumes_to_the_same_weights(det_run, tmp_path):
    x, v = _images(96, 0), _images(32, 1)
    whole = train(det_run, x, v, progress=False)
    split = dataclasses.replace(det_run, dir=tmp_path / "split")
    train(split, x, v, progress=False, stop_after_epoch=1)
    resumed = train(split, x, v, progress=False)
    assert resumed.start_epoch == 2 and resumed.history == whole.history
    assert all(torch.equal(resumed.model.state_dict()[k], w) for k, w in whole.model.state_dict().items())


HEAD = [{"Linear": {"args": [32, 32], "bias": False}}]


# (which params, edit, the key the refusal names, what else it must say)
@pytest.mark.parametrize("which, edit, key, names", [
    ("det", lambda r: r["train"].__setitem__("loss", ["mseloss", "regularizationloss", "bceloss"]), "train.loss",
     ["[reconstruction]", "got ['mseloss', 'regularizationloss', 'bceloss']"]),
    ("det", lambda r: r["train"].__setitem__("loss", []), "train.loss", ["[reconstruction]", "got []"]),
    ("det", lambda r: r["train"].__setitem__("loss", "mseloss"), "train.loss", ["[reconstruction]", "got mseloss"]),
    ("det", lambda r: r["train"].__setitem__("loss", ["l1loss"]), "train.loss", ["reconstruction loss 'l1loss'"]),
    ("det", lambda r: r["train"].__setitem__("loss", ["mseloss", "klloss"]), "train.loss", ["regularization loss 'klloss'"]),
    ("det", lambda r: r["model"]["architecture"]["encoder"].__setitem__("mean", HEAD), "model.architecture.encoder.mean",
     ["train.loss names one loss", "regularizationloss"]),
    ("det", lambda r: r["model"]["architecture"]["encoder"].__setitem__("log_var", HEAD),
     "model.architecture.encoder.log_var", ["train.loss names one loss"]),
    ("det", lambda r: r["train"].__setitem__("loss", ["mseloss", "regularizationloss"]), "model.architecture.encoder.mean",
     ["missing key", "a VAE"]),
    ("det", lambda r: r["train"].__setitem__("loss", ["bceloss"]), "train.loss[0]", ["bceloss", "ends with Linear"]),
    ("det", lambda r: r["model"]["architecture"]["encoder"]["conv"][0]["Linear"].__setitem__("args", [784, 16]),
     "model.architecture.decoder[0].Linear", ["cannot take its input", "(2, 16)"]),
    ("vae", lambda r: r["model"]["architecture"]["encoder"].pop("log_var"), "model.architecture.encoder.log_var",
     ["missing key", "a VAE"]),
    ("vae", lambda r: r["train"].__setitem__("loss", ["bceloss"]), "model.architecture.encoder.mean",
     ["train.loss names one loss", "regularizationloss"]),
])
def test_bad_model_and_loss_combinations_are_one_line(det_raw, default_raw, write_params, which, edit, key, names):
    raw = copy.deepcopy(det_raw if which == "det" else default_raw)
    edit(raw)
    path = write_params(raw, "bad")
    with pytest.raises(ParamsError) as info:
        load_checked_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    assert all(name in message[len(f"{path}: {key}: "):] for name in names), message
