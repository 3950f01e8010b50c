"""Tests for inverse_vae.inversion.methods: every inversion method on small seeded decoders."""

import math

import pytest
import torch
from decoders import seeded_decoder
from torch import nn

from inverse_vae.errors import StudyError
from inverse_vae.inversion.methods import (
    METHODS,
    MethodResult,
    _hybrid,
    box_least_squares,
    closed_form,
    encoder,
    layerwise_constrained,
    optimize,
    run_method,
)
from inverse_vae.inversion.plain import bce, plain_layers
from inverse_vae.metrics import relative_errors

SIZES = (4, 16, 32, 50)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These problems are tiny: threads only add overhead, and the CPUs are shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_decoder(scale=0.5, *, sizes=SIZES, **options):
    """Seeded Linear/Tanh/.../Linear/Sigmoid decoder; scale sets how far units saturate (biases 0)."""
    return seeded_decoder(sizes, scale=scale, **options)


def latents(n=64, dim=SIZES[0], seed=1, dtype=torch.float64):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def image_bce(decoder, z, x):
    """Per-image BCE(D(z), x) from the logits, as the methods measure it."""
    return bce(plain_layers(decoder, None)[0], z, x).detach()


def decode(decoder, z):
    with torch.no_grad():
        return decoder(z)


def share_below(z_hat, z, threshold):
    return float((relative_errors(z_hat, z) < threshold).double().mean())


# --- closed form and the common result shape ---------------------------------


def test_closed_form_exact_on_tame_decoder():
    decoder, z = make_decoder(), latents()
    x = decode(decoder, z)
    assert ((x > 1e-3) & (x < 1 - 1e-3)).all()  # nothing for the clamp to touch
    result = closed_form(decoder, x)
    assert isinstance(result, MethodResult)
    assert result.z.shape == z.shape and result.z.dtype == torch.float64
    assert result.iterations == 0 and result.seconds > 0
    assert relative_errors(result.z, z).max() < 1e-10
    assert result.history[-1]["iteration"] == 0 and math.isfinite(result.history[-1]["bce"])


def test_dtype_argument_and_image_shape():
    decoder, z = make_decoder(dtype=torch.float32), latents(8, dtype=torch.float32)
    x = decode(decoder, z).reshape(8, 1, 5, 10)  # any (N, ...) with the right pixel count
    assert closed_form(decoder, x).z.dtype == torch.float32
    assert closed_form(decoder, x, dtype=torch.float64).z.dtype == torch.float64


# --- layer-wise constrained --------------------------------------------------


def test_layerwise_recovers_tame_realizable():
    decoder, z = make_decoder(), latents()
    result = layerwise_constrained(decoder, decode(decoder, z))
    assert relative_errors(result.z, z).max() < 1e-6
    assert [h.shape[1] for h in result.info["hidden"]] == [16, 32]
    assert result.iterations == sum(stage["iterations"] for stage in result.info["stages"])


def test_layerwise_stays_finite_and_boxed_where_closed_form_breaks():
    decoder, z = make_decoder(scale=6.0), latents()
    x = decode(decoder, z)
    assert not torch.isfinite(closed_form(decoder, x, eps=0).z).all()
    delta = 1e-3
    result = layerwise_constrained(decoder, x, delta=delta)
    assert torch.isfinite(result.z).all()
    for h in result.info["hidden"]:
        assert h.abs().max() <= 1 - delta


def test_layerwise_zero_pixels_are_one_sided():
    # A biased last layer pushes some pixels far below eps; zeroing them keeps x consistent.
    decoder, z = make_decoder(bias=True), latents()
    with torch.no_grad():
        decoder[4].bias[:10] = -12.0
    x = decode(decoder, z)
    assert (x[:, :10] < 1e-5).all()
    x[:, :10] = 0.0
    eps = 1e-3
    result = layerwise_constrained(decoder, x, eps=eps)
    assert torch.isfinite(result.z).all()
    pre = result.info["hidden"][-1] @ decoder[4].weight.T + decoder[4].bias
    assert pre[:, :10].max() <= math.log(eps / (1 - eps)) + 1e-6
    assert relative_errors(result.z, z).max() < 1e-6  # the true z satisfies every constraint


# --- box-constrained least squares -------------------------------------------


def _problem(m=12, n=5, batch=6, seed=3):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=gen, dtype=torch.float64)
    targets = 2 * torch.randn(batch, m, generator=gen, dtype=torch.float64)
    return W, targets


def test_box_least_squares_loose_bound_is_lstsq():
    W, targets = _problem()
    h, iterations = box_least_squares(W, targets, (-100.0, 100.0), iters=500, tol=1e-14)
    expected = torch.linalg.lstsq(W, targets.T).solution.T
    assert torch.allclose(h, expected, atol=1e-10)
    assert iterations >= 1


def test_box_least_squares_tight_bound_satisfies_kkt():
    W, targets = _problem()
    bound = 0.2
    h, _ = box_least_squares(W, targets, (-bound, bound), iters=5000, tol=1e-15)
    assert h.abs().max() <= bound
    grad = (h @ W.T - targets) @ W
    at_upper, at_lower = h >= bound, h <= -bound
    interior = ~(at_upper | at_lower)
    assert at_upper.any() and at_lower.any() and interior.any()
    assert grad[interior].abs().max() < 1e-8  # stationary inside the box
    assert (grad[at_upper] <= 1e-8).all()  # descent would leave the box upward
    assert (grad[at_lower] >= -1e-8).all()


def test_box_least_squares_one_sided_rows():
    W, targets = _problem()
    lower = torch.zeros_like(targets, dtype=torch.bool)
    upper = torch.zeros_like(targets, dtype=torch.bool)
    lower[:, :3], upper[:, 3:6] = True, True
    h, _ = box_least_squares(W, targets, None, lower_mask=lower, upper_mask=upper, iters=5000, tol=1e-15)

    def hinged(h):
        r = h @ W.T - targets
        return torch.where(lower, r.clamp(max=0), torch.where(upper, r.clamp(min=0), r))

    assert (hinged(h) @ W).abs().max() < 1e-8  # stationary for the hinged (convex) objective
    plain = torch.linalg.lstsq(W, targets.T).solution.T
    assert ((hinged(h) ** 2).sum(1) < (hinged(plain) ** 2).sum(1) - 1e-6).all()
    r = h @ W.T - targets  # inequality rows that hold are slack, not pulled to equality
    assert (r[lower] > 1e-3).any() and (r[upper] < -1e-3).any()


# --- Levenberg-Marquardt -----------------------------------------------------


def _noisy_start(z, scale=0.1, seed=5):
    return z + scale * torch.randn(z.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(z.dtype)


def test_lm_converges_to_machine_precision_float64():
    decoder, z = make_decoder(scale=1.5), latents()
    result = optimize(decoder, decode(decoder, z), method="lm", init=_noisy_start(z), steps=100)
    assert relative_errors(result.z, z).max() < 1e-10
    assert result.info["converged"].all()
    assert result.history[-1]["objective"] < 1e-25


def test_lm_on_float32_outputs():
    decoder, z = make_decoder(scale=1.5, dtype=torch.float32), latents(dtype=torch.float32)
    result = optimize(decoder, decode(decoder, z), method="lm", init=_noisy_start(z), steps=100)
    assert result.z.dtype == torch.float32
    assert relative_errors(result.z, z).max() < 1e-4


def test_lm_handles_leaky_relu_bias_and_identity():
    gen = torch.Generator().manual_seed(4)
    decoder = nn.Sequential(nn.Linear(3, 12), nn.LeakyReLU(0.1), nn.Identity(), nn.Linear(12, 20),
                            nn.Flatten(), nn.Sigmoid()).double()
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    z = latents(10, dim=3)
    result = optimize(decoder, decode(decoder, z), method="lm", init=_noisy_start(z, 0.05), steps=100)
    assert relative_errors(result.z, z).max() < 1e-10


def test_lm_prior_and_chunks_agree():
    decoder, z = make_decoder(), latents(20)
    x = decode(decoder, z)
    one = optimize(decoder, x, method="lm", init=_noisy_start(z), prior_weight=0.01)
    chunked = optimize(decoder, x, method="lm", init=_noisy_start(z), prior_weight=0.01, chunk=7)
    assert torch.allclose(one.z, chunked.z, atol=1e-10)
    assert relative_errors(one.z, z).min() > 1e-6  # the prior pulls z off the exact solution


# --- Adam, L-BFGS and restarts -----------------------------------------------


def test_adam_decreases_objective():
    decoder, z = make_decoder(scale=1.5), latents(16)
    result = optimize(decoder, decode(decoder, z), method="adam", steps=200, record_every=20)
    objectives = [h["objective"] for h in result.history]
    assert objectives[-1] < 0.99 * objectives[0]
    assert result.iterations == 200 and result.history[-1]["iteration"] == 200
    assert torch.allclose(result.info["objective"], image_bce(decoder, result.z, decode(decoder, z)))


def test_adam_restarts_keep_each_images_best():
    decoder, z = make_decoder(scale=1.5), latents(7)
    x = decode(decoder, z)
    starts = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)  # as optimize draws them
    result = optimize(decoder, x, method="adam", steps=60, restarts=3, seed=9)
    single = [optimize(decoder, x, method="adam", steps=60, init=s) for s in starts]
    per_restart = torch.stack([r.info["objective"] for r in single])
    assert torch.allclose(result.info["objective_restarts"], per_restart, rtol=1e-9)
    assert torch.equal(result.info["restart"], per_restart.argmin(0))
    assert torch.allclose(result.info["objective"], per_restart.min(0).values, rtol=1e-9)
    assert torch.allclose(image_bce(decoder, result.z, x), result.info["objective"], rtol=1e-9)


@pytest.mark.parametrize("n", [1, 7])
def test_optimize_shapes_and_seed(n):
    decoder, z = make_decoder(), latents(n)
    x = decode(decoder, z)
    a = optimize(decoder, x, steps=5, restarts=2, seed=3)
    b = optimize(decoder, x, steps=5, restarts=2, seed=3)
    c = optimize(decoder, x, steps=5, restarts=2, seed=4)
    assert a.z.shape == (n, 4) and a.info["objective"].shape == (n,)
    assert a.info["objective_restarts"].shape == (2, n)
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)


def test_lbfgs_per_image_converges():
    decoder, z = make_decoder(), latents(32)
    result = optimize(decoder, decode(decoder, z), method="lbfgs", init=_noisy_start(z), steps=100)
    assert share_below(result.z, z, 1e-6) == 1.0


def test_retry_replaces_local_minima():
    decoder, z = make_decoder(scale=3.0), latents(64)
    x = decode(decoder, z)
    plain = optimize(decoder, x, method="lm", steps=100)
    retried = optimize(decoder, x, method="lm", steps=100, retry_above=1e-12, retries=4)
    assert plain.info["objective"].max() > 1e-12  # some random starts end in a local minimum
    assert retried.info["retried"].any()
    assert (retried.info["objective"] <= plain.info["objective"]).all()
    assert share_below(retried.z, z, 1e-8) > share_below(plain.z, z, 1e-8)


def test_optimize_refuses_bad_input():
    decoder = make_decoder()
    x = decode(decoder, latents(3))
    with pytest.raises(StudyError, match="'newton'"):
        optimize(decoder, x, method="newton")
    with pytest.raises(StudyError, match="init"):
        optimize(decoder, x, init=torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(StudyError, match="pixels"):
        optimize(decoder, x[:, :10])
    with pytest.raises(StudyError, match="ReLU"):
        optimize(nn.Sequential(nn.Linear(4, 50), nn.ReLU()), x)
    for method in ("lm", "lbfgs"):  # they choose their own step lengths: an lr would be ignored
        with pytest.raises(StudyError, match="lr"):
            optimize(decoder, x, method=method, lr=0.1)


# --- hybrid, encoder and the registry ----------------------------------------


def test_hybrid_fixes_closed_form_failures():
    decoder, z = make_decoder(scale=3.0), latents(100)
    x = decode(decoder, z)
    start = closed_form(decoder, x)
    assert share_below(start.z, z, 1e-8) < 0.9  # the clamp breaks a good share
    result = _hybrid(decoder, x, start=start, refine="lm")
    assert share_below(result.z, z, 1e-8) >= 0.99
    assert result.seconds >= start.seconds
    assert result.info["start_seconds"] == start.seconds
    assert result.history[0]["phase"] == "start" and result.history[-1]["phase"] == "refine"


def test_hybrid_from_nonfinite_tensor_start():
    decoder, z = make_decoder(), latents(5)
    start = _noisy_start(z)
    start[0] = float("inf")
    result = _hybrid(decoder, decode(decoder, z), start=start, refine="adam", steps=3)
    assert result.info["start_nonfinite"] == 1 and result.info["start_seconds"] == 0.0
    assert torch.isfinite(result.z).all()


class _TinyVAE(nn.Module):
    """Just what encoder() needs: encode(x) -> (mean, log_var) and a decoder."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder
        self.mean = nn.Linear(50, 4, bias=False).double()

    def encode(self, x):
        h = x.reshape(x.shape[0], -1)
        return self.mean(h), torch.zeros_like(self.mean(h))


def test_encoder_and_run_method():
    decoder, z = make_decoder(), latents(6)
    x = decode(decoder, z)
    model = _TinyVAE(decoder)
    result = encoder(model, x)
    with torch.no_grad():
        assert torch.equal(result.z, model.encode(x)[0])
    refined = run_method("hybrid_encoder_lm", None, x, model=model)
    assert relative_errors(refined.z, z).max() < 1e-6 or refined.info["objective"].max() < 1e-20
    assert refined.seconds >= refined.info["start_seconds"] > 0


def test_run_method_names_and_overrides():
    decoder, z = make_decoder(), latents(4)
    x = decode(decoder, z)
    assert run_method("optimize_adam", decoder, x, steps=3).iterations == 3
    with pytest.raises(StudyError, match="'no_such_method'"):
        run_method("no_such_method", decoder, x)
    with pytest.raises(StudyError, match="model"):
        run_method("encoder", decoder, x)
    for name, spec in METHODS.items():
        assert spec.start is None or spec.start in METHODS, name
