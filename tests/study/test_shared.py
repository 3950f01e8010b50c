"""Work shared between notebooks: the run cache, the prior sample and the cached probe."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inverse_vae.core.checkpoints import save_checkpoint
from inverse_vae.study import shared
from inverse_vae.study.evaluate import linear_probe


def cached_arrays(folder, name, key, compute):
    """shared.cached on a run whose folder is `folder`: the entry lives in folder/cache/<name>.npz."""
    return shared.cached(SimpleNamespace(dir=folder), name, key, compute)


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.asarray(value)}
    return compute, calls


def test_an_entry_is_computed_once_per_key(tmp_path):
    compute, calls = _counting([1.0, 2.0])
    first = cached_arrays(tmp_path, "thing", {"k": 1}, compute)
    again = cached_arrays(tmp_path, "thing", {"k": 1}, compute)
    assert len(calls) == 1 and np.array_equal(first["a"], again["a"])
    cached_arrays(tmp_path, "thing", {"k": 2}, compute)  # other key: recomputed
    assert len(calls) == 2


def test_a_damaged_entry_is_recomputed_not_trusted(tmp_path):
    compute, calls = _counting([3.0])
    cached_arrays(tmp_path, "thing", {"k": 1}, compute)
    (tmp_path / "cache" / "thing.npz").write_bytes(b"not a zip file")
    assert cached_arrays(tmp_path, "thing", {"k": 1}, compute)["a"].tolist() == [3.0]
    assert len(calls) == 2
    assert not list(tmp_path.rglob(".*.tmp")), "a temporary file was left behind"


def test_a_pickled_entry_is_refused(tmp_path):
    # An .npz holding an object array would need pickle to load: treated as damaged, never unpickled.
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / "thing.npz", __key__=np.array('{"k": 1}'), a=np.array([{"x": 1}], dtype=object))
    compute, calls = _counting([4.0])
    assert cached_arrays(tmp_path, "thing", {"k": 1}, compute)["a"].tolist() == [4.0] and len(calls) == 1


def test_the_stored_probe_predicts_exactly_as_the_fitted_one(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(300, 5, generator=g), torch.from_numpy(np.repeat(np.arange(3), 100))
    z[:, 0] += y  # make the classes separable in part
    checkpoint = tmp_path / "model.pt"
    _save_weights(checkpoint, torch.ones(2))
    config = SimpleNamespace(seed=0, evaluate=SimpleNamespace(probe_max_iter=200),
                             data=SimpleNamespace(train_subset=None, val_fraction=0.1))
    run = SimpleNamespace(config=config, dir=tmp_path, model_file=checkpoint)
    fits = []
    monkeypatch.setattr(shared, "train_val_images", lambda run: fits.append(1) or ((z, y), (None, None)))
    monkeypatch.setattr(shared, "encode_means", lambda model, x: x.numpy())
    fitted = shared.probe(run, model=None)
    restored = shared.probe(run, model=None)  # read back from cache/probe.npz, not fitted again
    assert len(fits) == 1 and (tmp_path / "cache" / "probe.npz").is_file()
    reference = linear_probe(z.numpy(), y.numpy(), max_iter=200, seed=0)
    probe_z = torch.randn(500, 5, generator=g).numpy() * 2
    for probe in (fitted, restored):
        assert np.array_equal(probe.predict(probe_z), reference.predict(probe_z))
        assert np.array_equal(probe.predict_proba(probe_z), reference.predict_proba(probe_z))
    _save_weights(checkpoint, torch.ones(2), adam=torch.zeros(2))  # compacted or not: the same weights, not refitted
    shared.probe(run, model=None)
    assert len(fits) == 1
    _save_weights(checkpoint, torch.full((2,), 2.0))  # a retrained model: fitted again
    shared.probe(run, model=None)
    assert len(fits) == 2


def _save_weights(path, weight, adam=None):
    state = {"epoch": 1, "model_state_dict": {"decoder.0.weight": weight}, "history": {}}
    if adam is not None:  # a full checkpoint's optimizer state, which a compact one drops
        state["optimizer_state_dict"] = {"state": {0: {"exp_avg": adam}}, "param_groups": []}
    save_checkpoint(state, path)


def _fake_run(tmp_path, seed=0, n_prior=50):
    config = SimpleNamespace(seed=seed, invert=SimpleNamespace(n_prior=n_prior))
    return SimpleNamespace(config=config, dir=tmp_path)


def test_every_notebook_gets_the_same_prior_sample(tmp_path):
    run = _fake_run(tmp_path)
    whole = shared.prior_latents(run, 4)
    assert whole.shape == (50, 4) and whole.dtype == torch.float32
    assert torch.equal(shared.prior_latents(run, 4, 10), whole[:10])
    expected = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))  # what 03 always drew
    assert torch.equal(whole, expected)
    assert not torch.equal(shared.prior_latents(_fake_run(tmp_path / "other", seed=1), 4), whole)
    with pytest.raises(ValueError, match="n_prior is 50"):
        shared.prior_latents(run, 4, 51)


def test_the_prior_sample_is_not_the_optimizers_random_starts(tmp_path):
    # 05 measures how optimizers with random starts recover these latents: a start equal to the
    # answer would fake a recovery. Zero steps return the starts themselves.
    from decoders import small_decoder

    from inverse_vae.inversion.methods import optimize

    decoder = small_decoder().double()
    z = shared.prior_latents(_fake_run(tmp_path, n_prior=200), 4).double()
    with torch.no_grad():
        x = decoder(z)
    starts = optimize(decoder, x, method="adam", steps=0).z
    assert starts.shape == z.shape and (z - starts).norm(dim=1).min() > 1e-3
