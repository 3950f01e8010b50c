"""Tests for inverse_vae.inversion.chain (exact inversion, clamps, refusals), the recovery metrics
and inversion.attribution."""

import json
import math

import pytest
import torch
from decoders import seeded_decoder
from torch import nn

from inverse_vae.errors import StudyError
from inverse_vae.inversion.attribution import CAUSES, attribute_failures
from inverse_vae.inversion.chain import InverseChain, forward_trace, realizable
from inverse_vae.metrics import latent_recovery, relative_errors

SIZES = (8, 32, 64, 100)


def make_decoder(sizes=SIZES, **options):
    """Seeded Linear/hidden/.../Linear/Sigmoid decoder with pre-activations of order 1 (biases N(0, 0.09))."""
    return seeded_decoder(sizes, bias_std=0.3, **options)


def latents(n=200, dim=SIZES[0], seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def decode(decoder, z):
    with torch.no_grad():
        return decoder(z)


def invert(decoder, x, **options):
    return InverseChain(decoder).invert(x, **options)


def invert_one_layer(layer, y, eps):
    """The chain of a decoder that is this one activation, on a row of values."""
    return InverseChain(nn.Sequential(layer)).invert(y[None], dtype=y.dtype, eps=eps)[0]


# --- round trips -----------------------------------------------------------


def test_round_trip_float64_exact():
    decoder, z = make_decoder(), latents()
    z_hat = invert(decoder, decode(decoder, z), eps=0)
    assert z_hat.dtype == torch.float64
    assert relative_errors(z_hat, z).max() < 1e-10


def test_round_trip_float32_is_modest():
    # float32 inversion of a float64 image: rounding the image and pinv to 24 bits,
    # amplified by atanh/logit, leaves errors around 1e-6 typical; the worst of 200 depends on the
    # arithmetic path (2e-4 with AVX2 kernels, 5e-3 with PyTorch's portable ones and SSE4.2 MKL).
    decoder, z = make_decoder(), latents()
    z_hat = invert(decoder, decode(decoder, z), eps=0, dtype=torch.float32)
    assert z_hat.dtype == torch.float32
    summary = latent_recovery(z_hat, z)
    assert summary["nonfinite"] == 0
    assert summary["rel_err_median"] < 1e-4
    assert summary["rel_err_max"] < 2e-2


def test_biased_decoder_inverted_exactly():
    decoder, z = make_decoder(bias=True), latents()
    chain = InverseChain(decoder)
    assert all(chain.pinv(s.index, torch.float64)[1] is not None for s in chain.steps if s.kind.is_linear)
    z_hat = invert(decoder, decode(decoder, z), eps=0)
    assert relative_errors(z_hat, z).max() < 1e-10


def test_leaky_relu_decoder_round_trip():
    decoder = make_decoder(hidden=lambda: nn.LeakyReLU(0.1))
    z = latents()
    assert relative_errors(invert(decoder, decode(decoder, z), eps=0), z).max() < 1e-10


def test_image_shaped_input_is_flattened():
    decoder = make_decoder((8, 32, 64, 784))
    z = latents(10)
    x = decode(decoder, z).reshape(10, 1, 28, 28)
    assert relative_errors(invert(decoder, x, eps=0), z).max() < 1e-10


# --- activation inverses -----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_inverse_clamp_is_exact_in_dtype(dtype):
    out = invert_one_layer(nn.Sigmoid(), torch.tensor([0.0, 1.0], dtype=dtype), 1e-3)
    assert out.dtype == dtype
    expected = torch.logit(torch.tensor([1e-3, 1 - 1e-3], dtype=dtype))
    assert torch.equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_inverse_clamp_is_exact_in_dtype(dtype):
    out = invert_one_layer(nn.Tanh(), torch.tensor([-1.0, 1.0, 0.9999], dtype=dtype), 1e-3)
    bound = torch.tensor(1 - 1e-3, dtype=dtype)
    assert torch.equal(out, torch.atanh(torch.stack([-bound, bound, bound])))


@pytest.mark.parametrize("eps", [0, None])
def test_unclamped_inverses_show_inf_and_nan(eps):
    # The chain refuses images outside the decoder's range; a nan pixel passes through as nan.
    sig = invert_one_layer(nn.Sigmoid(), torch.tensor([0.0, 1.0, math.nan], dtype=torch.float64), eps)
    assert sig[0] == -math.inf and sig[1] == math.inf and torch.isnan(sig[2])
    tanh = invert_one_layer(nn.Tanh(), torch.tensor([1.0, -1.0, math.nan], dtype=torch.float64), eps)
    assert tanh[0] == math.inf and tanh[1] == -math.inf and torch.isnan(tanh[2])


def test_inside_clamp_values_are_untouched():
    y = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    assert torch.equal(invert_one_layer(nn.Sigmoid(), y, 1e-3), torch.logit(y))
    assert torch.equal(invert_one_layer(nn.Tanh(), y - 0.5, 1e-3), torch.atanh(y - 0.5))


def test_bad_eps_refused():
    with pytest.raises(StudyError, match=r"layer 0 \(Sigmoid\): sigmoid inverse eps"):
        invert_one_layer(nn.Sigmoid(), torch.rand(3), 0.5)
    with pytest.raises(StudyError, match="eps"):
        invert(nn.Sequential(nn.Tanh()), torch.rand(2, 3), eps=-1e-3)


def test_leaky_relu_inverse_inverts_leaky_relu():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    for slope in (0.01, 0.2):
        y = nn.LeakyReLU(slope)(x)
        torch.testing.assert_close(invert_one_layer(nn.LeakyReLU(slope), y, 0), x, rtol=1e-15, atol=0)


# --- building the chain ------------------------------------------------------------


def test_chain_structure_and_eps_overrides():
    chain = InverseChain(make_decoder())
    steps = chain.configured(eps=1e-5, eps_head=1e-3)
    assert [s.name for s in steps] == [
        "inv5_Sigmoid", "inv4_Linear", "inv3_Tanh", "inv2_Linear", "inv1_Tanh", "inv0_Linear"]
    assert [s.index for s in steps] == [5, 4, 3, 2, 1, 0]
    assert steps[0].eps == 1e-3 and steps[2].eps == 1e-5 and steps[1].eps == 0.0
    assert [s.eps for s in chain.configured(eps=1e-3, eps_head=0.0)][::2] == [0.0, 1e-3, 1e-3]
    pinv, bias = chain.pinv(4, torch.float32)
    assert pinv.dtype == torch.float32 and pinv.shape == (64, 100) and bias is None


def test_trace_matches_invert_and_forward():
    decoder, z = make_decoder(), latents(20)
    x = decode(decoder, z)
    chain = InverseChain(decoder)
    trace = chain.trace(x, eps=0, dtype=torch.float32)
    assert trace[0].step.name == "inv5_Sigmoid" and torch.equal(trace[0].arriving, x.float())
    assert all(t.output.dtype == torch.float32 for t in trace)
    assert all(torch.equal(a.output, b.arriving) for a, b in zip(trace, trace[1:]))
    assert torch.equal(trace[-1].output, chain.invert(x, eps=0, dtype=torch.float32))
    # Tracing forward and backward agree layer by layer: step inv3_Tanh undoes layer 3.
    forward = forward_trace(decoder, z)
    assert len(forward) == len(decoder)
    torch.testing.assert_close(chain.trace(x, eps=0)[2].output, forward[2])


def test_chain_is_a_snapshot_of_the_weights():
    decoder = make_decoder()
    chain = InverseChain(decoder)
    first = chain.pinv(4, torch.float64)[0].clone()
    with torch.no_grad():
        decoder[4].weight.mul_(2)
    assert torch.equal(chain.pinv(4, torch.float64)[0], first)  # built before the edit: unchanged
    torch.testing.assert_close(InverseChain(decoder).pinv(4, torch.float64)[0], first / 2)


def test_realizable_computes_in_the_dtype_asked():
    decoder = make_decoder(dtype=torch.float32)
    z = latents(5)
    x = realizable(decoder, z, torch.float64)
    assert x.dtype == torch.float64 and next(decoder.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(x, decoder.double()(z))


def test_relu_refused_naming_layer():
    decoder = make_decoder(hidden=nn.ReLU)
    with pytest.raises(StudyError, match=r"decoder layer 3 \(ReLU\) has no inverse"):
        InverseChain(decoder)


@pytest.mark.parametrize(
    "decoder, pattern",
    [
        (nn.Sequential(nn.Linear(8, 16), nn.Softplus()), r"layer 1 \(Softplus\)"),
        (nn.Sequential(nn.Linear(8, 16), nn.Dropout()), r"layer 1 \(Dropout\) has no inverse"),
        (nn.Sequential(nn.Linear(16, 8), nn.Sigmoid()), r"layer 0 \(Linear\) 16->8 is not injective"),
        (nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.0)), r"layer 1 \(LeakyReLU\)"),
        (nn.Sequential(nn.Linear(8, 16), nn.Flatten(0, -1)), r"layer 1 \(Flatten\)"),
        (nn.Linear(8, 16), "nn.Sequential"),
    ],
)
def test_other_refusals(decoder, pattern):
    with pytest.raises(StudyError, match=pattern):
        InverseChain(decoder)


def test_rank_deficient_linear_refused():
    linear = nn.Linear(4, 10, bias=False)
    with torch.no_grad():
        linear.weight[:, 3] = linear.weight[:, 0]
    with pytest.raises(StudyError, match="rank 3 < 4"):
        InverseChain(nn.Sequential(linear, nn.Sigmoid()))


def test_wrong_image_size_refused():
    with pytest.raises(StudyError, match="99 features"):
        invert(make_decoder(), torch.rand(3, 99))


# --- metrics -------------------------------------------------------------------


def test_latent_recovery_hand_built():
    z = torch.tensor([[3.0, 4.0]] * 4, dtype=torch.float64)  # ||z|| = 5
    z_hat = z.clone()
    z_hat[1, 0] += 5e-5  # rel 1e-5
    z_hat[2, 1] += 5e-3  # rel 1e-3
    z_hat[3, 0] = math.nan
    rel = relative_errors(z_hat, z)
    assert rel.dtype == torch.float64
    torch.testing.assert_close(rel[:3], torch.tensor([0.0, 1e-5, 1e-3], dtype=torch.float64))
    assert rel[3] == math.inf

    summary = latent_recovery(z_hat, z)
    assert set(summary) == {
        "n", "nonfinite", "rel_err_median", "rel_err_p99", "rel_err_max",
        "success_1e-2", "success_1e-4", "success_1e-6",
    }
    assert summary["n"] == 4 and summary["nonfinite"] == 1
    assert summary["success_1e-2"] == 0.75
    assert summary["success_1e-4"] == 0.5
    assert summary["success_1e-6"] == 0.25
    assert summary["rel_err_median"] == pytest.approx((1e-5 + 1e-3) / 2)
    assert summary["rel_err_p99"] == math.inf and summary["rel_err_max"] == math.inf
    assert all(type(v) in (int, float) for v in summary.values())
    json.dumps(summary)


def test_threshold_is_strict():
    z = torch.tensor([[1.0]], dtype=torch.float64)
    assert latent_recovery(z + 1e-2, z)["success_1e-2"] == 0.0


def test_inf_in_z_hat_counts_as_nonfinite():
    z = torch.ones(3, 2, dtype=torch.float64)
    z_hat = z.clone()
    z_hat[0, 1] = -math.inf
    summary = latent_recovery(z_hat, z)
    assert summary["nonfinite"] == 1 and summary["rel_err_median"] == 0.0


# --- failure attribution -----------------------------------------------------------


def test_attribution_finds_saturated_hidden_unit():
    decoder, z = make_decoder(), latents(100)
    with torch.no_grad():
        decoder[0].weight[0] *= 1e4  # unit 0 of layer 1's tanh saturates to exactly +-1
    x = decode(decoder, z)
    saturated = forward_trace(decoder, z)[1].abs().eq(1).any(1)
    assert saturated.sum() > 90

    result = attribute_failures(decoder, z, x, eps=0)
    failed = result["rel_err"] >= 1e-6
    assert failed[saturated].all() and not failed[~saturated].any()
    assert (result["sample_layer"][saturated] == 1).all()
    assert (result["sample_cause"][saturated] == CAUSES.index("hidden_saturated")).all()
    assert (result["sample_cause"][~saturated] == CAUSES.index("ok")).all()
    assert result["n_failed"] == int(saturated.sum())
    assert result["counts"] == [
        {"layer": 1, "type": "Tanh", "cause": "hidden_saturated", "count": int(saturated.sum())}
    ]
    json.dumps(result["counts"])


def test_attribution_output_saturated_and_clamped():
    decoder, z = make_decoder(), latents(4)
    x = decode(decoder, z)
    x[0, 5] = 0.0  # a black pixel: logit clamped, information gone
    x[1, 7] = 1.0 - 1e-5  # inside (0, 1) but beyond the clamp
    result = attribute_failures(decoder, z, x, eps=1e-3)
    assert result["sample_layer"][:2].tolist() == [5, 5]
    assert [CAUSES[c] for c in result["sample_cause"][:2].tolist()] == ["output_saturated", "clamped"]
    assert result["sample_cause"][2:].tolist() == [0, 0]


@pytest.mark.parametrize("dtype, eps", [(torch.float64, 1e-3), (torch.float32, 1e-3), (torch.float64, 0.0)])
def test_invert_leaves_the_images_alone_and_matches_its_trace(dtype, eps):
    decoder = make_decoder(bias=True, dtype=torch.float64)
    x = decoder(torch.randn(64, SIZES[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))).detach()
    x[:5, :7] = 1.0  # saturated pixels: clamped, or inf/nan without a clamp
    x = x.to(dtype)
    before = x.clone()
    chain = InverseChain(decoder)
    expected = chain.trace(x, eps=eps, dtype=dtype)[-1].output
    got = chain.invert(x, eps=eps, dtype=dtype)
    assert torch.equal(x, before)  # the images are the caller's: never written
    def finite(t):
        return torch.nan_to_num(t, posinf=7.0, neginf=-7.0)

    assert torch.equal(finite(got), finite(expected))
    assert torch.equal(got.isnan(), expected.isnan())
