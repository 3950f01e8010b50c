"""The CUDA-graph training path (train.cuda_graph): how it is chosen everywhere, and on a GPU that
it trains what the eager path trains. The GPU tests skip without CUDA (CI has none); they were
run on an H100/H200 through the device tool, see bench/RESULTS.md."""
import dataclasses

import pytest
import torch

from inverse_vae.core.config import OptimConfig, load_config
from inverse_vae.core.training import load_optimizer_state, make_optimizer, train, use_cuda_graph
from inverse_vae.errors import ParamsError, TrainingError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(n, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float().to(device)


@pytest.mark.parametrize("written, mode", [("auto", "auto"), ("on", "on"), ("off", "off"), ("true", "on"),
                                           ("false", "off")])
def test_cuda_graph_setting_is_read_as_a_mode(default_raw, write_params, written, mode):
    path = write_params(default_raw)
    path.write_text(path.read_text().replace("  plot_epochs: 10\n", f"  plot_epochs: 10\n  cuda_graph: {written}\n"))
    assert load_config(path).train.cuda_graph == mode


def test_unknown_cuda_graph_setting_names_the_key(default_raw, write_params):
    default_raw["train"]["cuda_graph"] = "always"
    with pytest.raises(ParamsError, match=r"train\.cuda_graph: unknown value 'always'; allowed: auto, on, off"):
        load_config(write_params(default_raw))


def test_graph_mode_is_chosen_by_device_and_optimizer():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert use_cuda_graph("auto", gpu, "Adam") and use_cuda_graph("on", gpu, "adam")
    assert not use_cuda_graph("auto", cpu, "adam") and not use_cuda_graph("off", gpu, "adam")
    assert not use_cuda_graph("auto", gpu, "sgd")
    with pytest.raises(TrainingError, match="'on' needs a CUDA device and the adam optimizer.*device cpu"):
        use_cuda_graph("on", cpu, "adam")


def test_on_without_cuda_stops_before_training(tiny_run):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = dataclasses.replace(tiny_run, config=tiny_run.config.replace(train={"cuda_graph": "on"}))
    with pytest.raises(TrainingError, match="cuda_graph: 'on' needs a CUDA device"):
        train(run, _images(128, 0), _images(32, 1), progress=False)
    assert not tiny_run.checkpoints.exists()


def test_resumed_optimizer_keeps_its_own_implementation():
    """A checkpoint from a CUDA run says fused/capturable; resuming on the CPU must not inherit that."""
    weight = torch.nn.Parameter(torch.ones(3))
    adam = OptimConfig(name="adam", learning_rate=0.5, others=None)
    saved = make_optimizer([weight], adam)
    state = saved.state_dict()
    state["param_groups"][0].update(fused=True, capturable=True, lr=0.25)
    resumed = make_optimizer([weight], adam)
    load_optimizer_state(resumed, state)
    group = resumed.param_groups[0]
    assert group["lr"] == 0.25  # what the optimizer computes comes from the checkpoint
    assert group["fused"] is None and group["capturable"] is False  # how it runs does not


def _cuda_run(tiny_run, mode, name):
    config = tiny_run.config.replace(device="cuda", train={
        "cuda_graph": mode, "train_epochs": 6, "plot_epochs": 3,
        "lr_scheduler": {"name": "steplr", "others": {"step_size": 2, "gamma": 0.5}}})
    return dataclasses.replace(tiny_run, config=config, dir=tiny_run.dir.parent / name)


@cuda
def test_graph_trains_what_the_eager_path_trains(tiny_run):
    x, v = _images(256, 0, "cuda"), _images(64, 1, "cuda")
    eager = train(_cuda_run(tiny_run, "off", "eager"), x, v, progress=False)
    graphed = train(_cuda_run(tiny_run, "on", "graph"), x, v, progress=False)
    assert graphed.cuda_graph and not eager.cuda_graph
    # same batches, same noise, same learning-rate schedule: equal up to floating-point noise
    torch.testing.assert_close(graphed.history["train"], eager.history["train"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(graphed.history["validation"], eager.history["validation"], rtol=1e-4, atol=1e-6)
    for name, value in eager.model.state_dict().items():
        torch.testing.assert_close(graphed.model.state_dict()[name], value, rtol=1e-3, atol=1e-5)


@cuda
def test_graph_run_resumes_to_the_same_weights(tiny_run):
    x, v = _images(256, 0, "cuda"), _images(64, 1, "cuda")
    whole = train(_cuda_run(tiny_run, "on", "whole"), x, v, progress=False)
    split = _cuda_run(tiny_run, "on", "split")
    train(split, x, v, progress=False, stop_after_epoch=3)
    resumed = train(split, x, v, progress=False)
    assert resumed.start_epoch == 4
    torch.testing.assert_close(resumed.history, whole.history, rtol=1e-5, atol=1e-7)
