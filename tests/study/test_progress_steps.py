"""The long loops of the notebooks show one flat bar each, its total known before the first step (an honest ETA),
counted to the end: a small case of each, with the bar forced on (the `bars` fixture)."""
import numpy as np
import pytest
import torch
from decoders import small_decoder

from inverse_vae.core.config import load_config
from inverse_vae.core.model import build_model
from inverse_vae.inversion.chain import InverseChain
from inverse_vae.study import compare, evaluate, failure, invert
from inverse_vae.study.likelihood import iwae_bound


@pytest.fixture
def model(root):
    torch.manual_seed(0)
    return build_model(load_config(root / "params" / "smoke.yaml")).eval()


def _images(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _latents(n: int, d: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(2))


def test_the_iwae_bound_steps_through_its_chunks(model, bars):
    iwae_bound(model, _images(5), k=4, rows=8)  # chunks of 8 // 4 = 2 images: 3 of them
    assert bars() == {"IWAE bound, K = 4": (3, 3)}


def test_the_realizable_grid_is_one_bar_over_sources_arithmetics_and_clamps(bars):
    decoder, z = small_decoder(), _latents(20, 4)
    summaries, _ = invert.realizable_grid(decoder, {"prior": z, "encoder_mean": 2 * z})
    assert bars() == {"realizable cases": (8, 8)}  # 2 sources x 2 arithmetics x (no clamp, the original's)
    assert [list(s) for s in summaries.values()] == [list(summaries["prior"])] * 2 and len(summaries["prior"]) == 4


def test_t_sne_counts_its_iterations_and_draws_the_same_map(bars):
    from openTSNE import TSNE

    z = _latents(120, 4).double().numpy()
    embedding = evaluate.embed_2d(z, "tsne", seed=3)
    assert bars() == {"t-SNE iterations": (750, 750)}  # 250 exaggerated + 500: openTSNE's defaults, every step
    plain = TSNE(n_components=2, random_state=3, initialization="pca", n_jobs=torch.get_num_threads(), verbose=False)
    np.testing.assert_array_equal(embedding, np.asarray(plain.fit(z)))  # the callback changes no number


def test_the_clamp_sweep_steps_per_chain(bars):
    decoder = small_decoder(out=784)
    rows = failure.clamp_sweep(decoder, _images(6).reshape(6, -1), _latents(10, 4), eps_list=(1e-3, 0.0))
    assert bars() == {"clamp margins, chains": (6, 6)} and [r["eps"] for r in rows] == [1e-3, 0.0]


def test_the_fixes_step_per_fix_and_image_kind(model, bars, monkeypatch):
    chain = InverseChain(model.decoder)  # two fixes with one chain's pseudo-inverses: the layer-wise solves take seconds
    two = {name: lambda _, x: chain.invert(x, dtype=torch.float64) for name in ("original", "another")}
    monkeypatch.setattr(failure, "fix_inverters", lambda *_, **__: two)
    fixes = failure.compare_fixes(model, None, _images(4), torch.arange(4), _latents(4, model.latent_dim), None,
                                  eps_best=1e-3, delta=1e-3)
    assert bars() == {"fixes, real and realizable images": (6, 6)}  # (the two, the encoder) x (real, realizable)
    assert list(fixes) == ["original", "another", "encoder mean (reference)"]


def test_the_realizable_methods_are_one_bar_over_both_arithmetics(model, bars):
    table, _ = compare.realizable_comparison(["closed_form", "encoder"], model, _latents(5, model.latent_dim), {})
    assert bars() == {"methods on realizable images, both arithmetics": (4, 4)}
    assert {name: list(v) for name, v in table.items()} == {n: ["float32", "float64"] for n in ("closed_form", "encoder")}


def test_noise_robustness_steps_per_level_and_method(model, bars):
    noise = compare.noise_robustness(["closed_form", "encoder"], model, [1e-4, 1e-2, 1e-1], 5, 0, {})
    assert bars() == {"noise levels × methods": (6, 6)} and all(len(v) == 3 for v in noise.values())
