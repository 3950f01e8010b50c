"""The builder's allow-list, the architecture check (a batch through every stack), the model's original
layout, the device fallback, and the loss against a hand computation."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from inverse_vae.core.config import LayerSpec, load_config
from inverse_vae.core.losses import negative_elbo_nats, original_loss
from inverse_vae.core.model import _ALLOWED_LAYERS, build_model, build_sequential, check_architecture, resolve_device
from inverse_vae.errors import ParamsError


def test_builder_builds_the_original_decoder(root):
    specs = load_config(root / "params" / "default.yaml").model.architecture.decoder
    decoder = build_sequential(specs, "model.architecture.decoder")
    kinds = [type(m).__name__ for m in decoder]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear", "Sigmoid"]
    assert decoder[0].weight.shape == (256, 32) and decoder[0].bias is None
    assert decoder[4].weight.shape == (784, 512)


@pytest.mark.parametrize("name", ["Module", "Sequential", "Transformer", "__class__", "parameter"])
def test_builder_refuses_names_outside_the_allow_list(name):
    assert name not in _ALLOWED_LAYERS
    with pytest.raises(ParamsError, match=rf"^decoder\[0\]: unknown layer {name!r}; allowed: "):
        build_sequential((LayerSpec(name),), "decoder")


def test_the_architecture_check_passes_a_batch_and_names_the_layer_that_cannot_take_it(root):
    config = load_config(root / "params" / "default.yaml")
    assert check_architecture(config.model.architecture) == 32  # the latent size
    narrow = config.replace(model={"architecture": {"decoder": [
        {"Linear": {"args": [32, 256]}}, {"LayerNorm": {"args": [128]}}, {"Linear": {"args": [256, 784]}}]}})
    with pytest.raises(ParamsError, match=r"^model\.architecture\.decoder\[1\]\.LayerNorm: cannot take its input "
                                          r"of shape \(2, 256\)"):
        check_architecture(narrow.model.architecture)
    short = config.replace(model={"architecture": {"decoder": [{"Linear": {"args": [32, 700]}}]}})
    with pytest.raises(ParamsError, match=r"^model\.architecture\.decoder: ends with 700 features"):
        check_architecture(short.model.architecture)


def test_a_device_missing_here_falls_back_to_the_cpu_saying_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    said = []
    assert resolve_device("CUDA", say=said.append) == torch.device("cpu")
    assert len(said) == 1 and "'cuda' requested but it is not available here; using the CPU" in said[0]
    with pytest.warns(UserWarning, match="not available here"):
        assert resolve_device("cuda") == torch.device("cpu")  # no say: a warning
    assert resolve_device("cpu", say=said.append) == torch.device("cpu") and len(said) == 1
    assert resolve_device("auto").type in ("cpu", "mps")


def test_model_state_dict_keys_match_the_original(root):
    model = build_model(load_config(root / "params" / "default.yaml"))
    assert set(model.state_dict()) == {
        "encoder_conv.0.weight", "encoder_conv.2.weight", "encoder_mean.0.weight",
        "encoder_log_var.0.weight", "decoder.0.weight", "decoder.2.weight", "decoder.4.weight",
    }
    out, mean, log_var = model(torch.rand(3, 1, 28, 28), torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 28, 28) and mean.shape == log_var.shape == (3, 32)
    assert isinstance(model.decoder, nn.Sequential)


def test_original_loss_matches_a_hand_computation():
    out = torch.tensor([[0.8, 0.3], [0.5, 0.9]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mean = torch.tensor([[0.5], [-1.0]])
    log_var = torch.tensor([[0.0], [math.log(2.0)]])
    bce = -(math.log(0.8) + math.log(0.7) + math.log(0.5) + math.log(0.9)) / 4
    kl = (0.5 * (0.25 - 0 + 1 - 1) + 0.5 * (1.0 - math.log(2.0) + 2.0 - 1)) / 2
    loss, rec, reg = original_loss(out, target, mean, log_var, alpha=0.1)
    assert rec.item() == pytest.approx(bce, rel=1e-6)
    assert reg.item() == pytest.approx(kl, rel=1e-6)
    assert loss.item() == pytest.approx(bce + 0.1 * kl, rel=1e-6)
    nats = negative_elbo_nats(out, target, mean, log_var)
    assert nats["bce"][0].item() == pytest.approx(-(math.log(0.8) + math.log(0.7)), rel=1e-6)
    assert nats["kl"][1].item() == pytest.approx(0.5 * (1.0 - math.log(2.0) + 2.0 - 1), rel=1e-6)
    assert torch.allclose(nats["nelbo"], nats["bce"] + nats["kl"])


# --- a decoder invertible by construction (model.decoder_constraint) -----------------------------------

def _constrained(default_raw, cond=4.0, rotate=True):
    from inverse_vae.core.config import _validate_config

    raw = copy.deepcopy(default_raw)
    raw["model"]["decoder_constraint"] = {"cond_max": cond, "rotate": rotate}
    return _validate_config(raw)


@pytest.mark.parametrize("rotate", [True, False])
def test_constrained_weights_keep_their_condition_number_below_the_bound_whatever_the_optimizer_does(default_raw, rotate):
    torch.manual_seed(0)
    model = build_model(_constrained(default_raw, 4.0, rotate))
    optimizer = torch.optim.SGD(model.decoder.parameters(), lr=5.0)
    for _ in range(3):  # large, arbitrary steps
        optimizer.zero_grad()
        model.decoder(torch.randn(64, 32)).pow(3).sum().backward()
        optimizer.step()
    for layer in model.decoder:
        if isinstance(layer, torch.nn.Linear):
            s = torch.linalg.svdvals(layer.weight.detach().double())
            assert float(s[0] / s[-1]) < 4.0 + 1e-6


def test_a_constrained_model_reloads_with_plain_weights_of_the_same_values(default_raw, tmp_path):
    from inverse_vae.core.checkpoints import load_model, save_checkpoint
    from inverse_vae.inversion.chain import InverseChain

    config = _constrained(default_raw, 16.0)
    torch.manual_seed(0)
    model = build_model(config)
    assert any("parametrizations" in key for key in model.state_dict())
    save_checkpoint({"model_state_dict": model.state_dict()}, tmp_path / "weights.pt")
    loaded = load_model(config, tmp_path / "weights.pt")
    assert all(type(layer) in (torch.nn.Linear, torch.nn.Tanh, torch.nn.Sigmoid) for layer in loaded.decoder)
    for ours, theirs in zip(loaded.decoder, model.decoder):
        if isinstance(ours, torch.nn.Linear):
            assert torch.equal(ours.weight, theirs.weight.detach())
    InverseChain(loaded.decoder)  # the table inverts it (a parametrized Linear it would refuse)


def test_the_constraint_enters_the_fingerprint_only_when_set(default_raw):
    from inverse_vae.core.checkpoints import params_fingerprint
    from inverse_vae.core.config import _validate_config

    plain = params_fingerprint(_validate_config(copy.deepcopy(default_raw)))
    assert not any("decoder_constraint" in key for key in plain)  # the committed runs' checkpoints still match
    constrained = params_fingerprint(_constrained(default_raw, 16.0))
    assert constrained["model.decoder_constraint.cond_max"] == 16.0 and constrained["model.decoder_constraint.rotate"]


def test_a_condition_bound_below_one_is_refused(default_raw):
    from inverse_vae.core.config import _validate_config
    from inverse_vae.errors import ParamsError

    raw = copy.deepcopy(default_raw)
    raw["model"]["decoder_constraint"] = {"cond_max": 0.5}
    with pytest.raises(ParamsError, match=r"^model\.decoder_constraint\.cond_max"):
        _validate_config(raw)
