"""Training: determinism, exact resumption, checkpoints on schedule, a clear stop on NaN."""
import dataclasses

import pytest
import torch

from inverse_vae.core.training import _squeeze_targets, train
from inverse_vae.errors import TrainingError


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()


def _weights(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


@pytest.mark.slow
def test_same_params_give_the_same_weights(tiny_run, tmp_path):
    x, v = _images(128, 0), _images(32, 1)
    a = _weights(train(tiny_run, x, v, progress=False))
    b = _weights(train(dataclasses.replace(tiny_run, dir=tmp_path / "again"), x, v, progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(tiny_run, tmp_path):
    x, v = _images(128, 0), _images(32, 1)
    whole = train(tiny_run, x, v, progress=False)
    assert sorted(p.name for p in tiny_run.checkpoints.iterdir()) == ["model_2.pt", "model_4.pt"]

    split = dataclasses.replace(tiny_run, dir=tmp_path / "split")
    first = train(split, x, v, progress=False, stop_after_epoch=2)  # "killed" after epoch 2
    assert first.epochs == 2 and [p.name for p in split.checkpoints.iterdir()] == ["model_2.pt"]
    resumed = train(split, x, v, progress=False)
    assert resumed.start_epoch == 3
    assert resumed.history == whole.history
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_non_finite_loss_stops_with_epoch_and_batch(tiny_run):
    x, v = _images(128, 0), _images(32, 1)
    x[70] = float("nan")  # lands in some batch of epoch 1
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, batch \d/4") as info:
        train(tiny_run, x, v, progress=False)
    assert "no checkpoint was written" in str(info.value)
    assert not tiny_run.checkpoints.exists() or not any(tiny_run.checkpoints.iterdir())


def test_batch_larger_than_data_is_refused(tiny_run):
    run = dataclasses.replace(tiny_run, config=tiny_run.config.replace(train={"batch_size": 1000}))
    with pytest.raises(TrainingError, match="train.batch_size: 1000 is larger than the 128 training images"):
        train(run, _images(128, 0), _images(32, 1), progress=False)


def test_squeezed_targets():
    x = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(_squeeze_targets(x, [0.1, 0.9]), torch.tensor([0.1, 0.5, 0.9]))
    assert _squeeze_targets(x, None) is x


@pytest.mark.slow
def test_a_run_with_changed_train_settings_trains_in_its_own_folder(tiny_run, tmp_path):
    squeezed = dataclasses.replace(tiny_run, config=tiny_run.config.replace(train={"target_range": [0.1, 0.9]}),
                                   dir=tmp_path / "squeezed")
    assert squeezed.config.train.target_range == (0.1, 0.9)
    assert tiny_run.config.train.target_range is None  # the original run is untouched
    result = train(squeezed, _images(128, 0), _images(32, 1), progress=False)
    assert (squeezed.checkpoints / "model_4.pt").is_file() and result.epochs == 4
    assert not tiny_run.dir.exists()
