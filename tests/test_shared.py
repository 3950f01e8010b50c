"""Work shared between notebooks: the run cache, the prior sample and the cached probe."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inverse_vae.runs.cache import cached_arrays
from inverse_vae.study import shared
from inverse_vae.study.evaluate import linear_probe


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
    (tmp_path / "thing.npz").write_bytes(b"not a zip file")
    assert cached_arrays(tmp_path, "thing", {"k": 1}, compute)["a"].tolist() == [3.0]
    assert len(calls) == 2
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_a_pickled_entry_is_refused(tmp_path):
    # An .npz holding an object array would need pickle to load: treated as damaged, never unpickled.
    np.savez(tmp_path / "thing.npz", __key__=np.array('{"k": 1}'), a=np.array([{"x": 1}], dtype=object))
    compute, calls = _counting([4.0])
    assert cached_arrays(tmp_path, "thing", {"k": 1}, compute)["a"].tolist() == [4.0] and len(calls) == 1


def test_the_stored_probe_predicts_exactly_as_the_fitted_one():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(300, 5, generator=g).numpy(), np.repeat(np.arange(3), 100)
    z[:, 0] += y  # make the classes separable in part
    fitted = linear_probe(z, y, max_iter=200, seed=0)
    restored = shared.probe_from_arrays(shared.probe_to_arrays(fitted))
    probe_z = torch.randn(500, 5, generator=g).numpy() * 2
    assert np.array_equal(restored.predict(probe_z), fitted.predict(probe_z))
    assert np.array_equal(restored.predict_proba(probe_z), fitted.predict_proba(probe_z))


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
