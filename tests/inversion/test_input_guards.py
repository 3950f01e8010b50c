"""What the inversion refuses before computing (issue #27, third pass), in one StudyError line:

* images that hold no real numbers (a complex tensor) or no data (a tensor on the meta device) got a
  raw torch error, or worse, a complex image with an unbounded-output decoder lost its imaginary part
  silently; integer and bool images (0/1 pixels) stay accepted, as before;
* a LeakyReLU whose negative_slope is 0, subnormal or out of range in the dtype the decoder computes
  in passed the invertibility check: LeakyReLU(1e-46) in float32 is a ReLU (0 of 100 latents came back).
"""
from __future__ import annotations

import pytest
import torch
from decoders import entry_points, small_decoder
from torch import nn

from inverse_vae.errors import StudyError
from inverse_vae.inversion import plain
from inverse_vae.inversion.chain import InverseChain
from inverse_vae.inversion.methods import closed_form

N_OUT = 50


def _bounded():
    """Sigmoid output: images are checked against [0, 1]."""
    return small_decoder(out=N_OUT).double()


def _unbounded():
    """LeakyReLU then Linear output: no range check, so nothing else looked at the values."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.1), nn.Linear(16, N_OUT)).double()


def _entry_points(decoder):
    """name -> call(images): check_images, the chain's invert and trace, and every method."""
    layers, _, _ = plain.plain_layers(decoder, None)
    return {"plain.check_images": lambda im: plain.check_images(im, N_OUT, layers[-1].kind.output_range),
            **entry_points(decoder, N_OUT)}


def _images(decoder):
    with torch.no_grad():
        return decoder(torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))


BAD = {
    "complex64": (lambda x: x.to(torch.complex64),
                  "images must hold real numbers (floating point, integers or booleans), got torch.complex64"),
    "complex128": (lambda x: x.to(torch.complex128),
                   "images must hold real numbers (floating point, integers or booleans), got torch.complex128"),
    "meta": (lambda x: x.to("meta"),
             "images are on the meta device, which holds shapes but no values: pass images that hold data "
             "(on the cpu or a GPU)"),
    "sparse": (lambda x: x.to_sparse(),
               "images must be a dense (strided) tensor, got layout torch.sparse_coo: convert it with .to_dense()"),
}


@pytest.mark.parametrize("make_decoder", [_bounded, _unbounded], ids=["sigmoid output", "unbounded output"])
@pytest.mark.parametrize("bad", BAD)
def test_images_without_real_values_are_refused_in_one_line_everywhere(make_decoder, bad):
    decoder = make_decoder()
    make, message = BAD[bad]
    images = make(_images(decoder))
    for name, call in _entry_points(decoder).items():
        with pytest.raises(StudyError) as info:
            call(images)
        assert str(info.value) == message, name


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_and_bool_images_are_still_accepted(dtype):
    """0/1 pixels as integers or booleans were accepted before (exactly representable): still are."""
    decoder = _bounded()
    binary = (_images(decoder) > 0.5).to(dtype)
    as_float = binary.to(torch.float64)
    chain = InverseChain(decoder)
    assert torch.equal(chain.invert(binary), chain.invert(as_float))
    assert torch.equal(closed_form(decoder, binary).z, closed_form(decoder, as_float).z)


# --- a LeakyReLU that its decoder's arithmetic cannot invert ---------------------------------------

def _leaky(slope, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(slope), nn.Linear(16, N_OUT)).to(dtype)


ARITHMETIC = "the dtype the decoder computes in"
REFUSED_SLOPES = {
    "rounds to 0 in float32": (1e-46, torch.float32,
                               f"negative_slope 1e-46 rounds to 0 in torch.float32, {ARITHMETIC}: there the layer is "
                               f"a ReLU, not injective"),
    "subnormal in float32": (1e-40, torch.float32,
                             f"negative_slope 1e-40 is subnormal in torch.float32, {ARITHMETIC} (smallest normal "
                             f"1.17549e-38): its products lose their precision or flush to 0, not injective"),
    "subnormal in float64": (1e-310, torch.float64,
                             f"negative_slope 1e-310 is subnormal in torch.float64, {ARITHMETIC} (smallest normal "
                             f"2.22507e-308): its products lose their precision or flush to 0, not injective"),
    "overflows float32": (1e39, torch.float32, f"negative_slope 1e+39 overflows to inf in torch.float32, {ARITHMETIC}"),
    "infinite": (float("inf"), torch.float64, "negative_slope inf is not a finite number"),
    "zero (as before)": (0.0, torch.float32, "negative_slope 0.0 is not > 0, so it is not injective"),
}


@pytest.mark.parametrize("case", REFUSED_SLOPES)
def test_a_leaky_relu_not_invertible_in_the_decoders_dtype_is_refused_naming_the_layer(case):
    slope, dtype, reason = REFUSED_SLOPES[case]
    decoder = _leaky(slope, dtype)
    expected = f"decoder layer 1 (LeakyReLU): {reason}"
    for name, call in {"InverseChain": lambda: InverseChain(decoder),
                       "plain_layers": lambda: plain.plain_layers(decoder, None),
                       "plain_layers in float64": lambda: plain.plain_layers(decoder, torch.float64),
                       "closed_form": lambda: closed_form(decoder, torch.zeros(2, N_OUT, dtype=dtype))}.items():
        with pytest.raises(StudyError) as info:
            call()
        assert str(info.value) == expected, name


def test_the_float32_slope_that_rounds_to_zero_did_recover_nothing():
    """Why it is refused: computed in float32, LeakyReLU(1e-46) maps every negative input to 0."""
    layer = nn.LeakyReLU(1e-46)
    assert torch.equal(layer(torch.tensor([-1.0, -1e30])), torch.zeros(2))


def test_a_slope_the_decoders_dtype_holds_is_accepted():
    # 1e-46 is a normal float64 number: a float64 decoder computes with it (conditioning is the study's
    # measure, not this check's); the usual slopes pass in float32.
    InverseChain(_leaky(1e-46, torch.float64))
    for slope in (0.01, 0.2, 1.0, 3.0):
        chain = InverseChain(_leaky(slope))
        z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            x = _leaky(slope)(z)
        torch.testing.assert_close(chain.invert(x, dtype=torch.float32, eps=0), z, rtol=1e-4, atol=1e-4)
