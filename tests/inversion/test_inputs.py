"""What the inversion entry points refuse (one StudyError line) and what they do with nan images:
an image whose objective is not finite comes back as a nan latent, counted non-finite, never as a
start passed off as recovered. Valid inputs give the same numbers as before (validation only)."""
import math

import pytest
import torch
from decoders import FakeVAE, entry_points, small_decoder

from inverse_vae.errors import StudyError
from inverse_vae.inversion.chain import InverseChain
from inverse_vae.inversion.methods import METHODS, _hybrid, closed_form, optimize, run_method
from inverse_vae.metrics import latent_recovery

N_OUT = 50


@pytest.fixture(scope="module")
def decoder():
    return small_decoder(out=N_OUT).double()


@pytest.fixture(scope="module")
def x(decoder):
    with torch.no_grad():
        return decoder(torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))


BAD_INPUTS = {
    "empty batch": (lambda x: x[:0], r"non-empty batch"),
    "a Python list": (lambda x: x.tolist(), r"must be a torch\.Tensor.*list"),
    "pixels in 0-255": (lambda x: (x * 255).round(), r"must lie in \[0, 1\].*divide by 255"),
    "a value above 1": (lambda x: torch.where(torch.arange(N_OUT) == 3, 1.2, x), r"must lie in \[0, 1\].*1\.2"),
    "a negative value": (lambda x: x - 0.6, r"must lie in \[0, 1\]"),
    "an infinite pixel": (lambda x: torch.where(torch.arange(N_OUT) == 0, math.inf, x), r"must lie in \[0, 1\]"),
    "wrong pixel count": (lambda x: x[:, :10], r"10 features \(pixels\)"),
    "a single image without batch axis": (lambda x: x[0], r"non-empty batch"),
}


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_every_entry_point_refuses_bad_images_in_one_line(decoder, x, bad):
    make, pattern = BAD_INPUTS[bad]
    images = make(x[:2].clone())
    for name, call in entry_points(decoder, N_OUT).items():
        with pytest.raises(StudyError, match=pattern) as e:
            call(images)
        assert "\n" not in str(e.value), name


def test_float_rounding_of_the_decoders_own_outputs_is_accepted(decoder, x):
    # A float32 copy of a float64 image, and values a few ulps past the ends, are the decoder's own.
    images = x[:2].clone()
    images[0, 0], images[1, 0] = 1 + 4e-16, -4e-16
    assert torch.isfinite(closed_form(decoder, images, eps=1e-3).z).all()
    assert closed_form(decoder, x[:2].float(), dtype=torch.float64).z.shape == (2, 4)


def test_validation_changes_no_number_for_valid_images(decoder, x):
    # The chain on valid images: the same bits as applying its steps by hand.
    chain = InverseChain(decoder)
    h = x.clone()
    for step in chain.configured(eps=1e-3):
        h = chain.apply(step, h)
    assert torch.equal(chain.invert(x, eps=1e-3), h)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_nan_image_comes_back_nan_from_every_method(decoder, x, name):
    images = x.clone()
    images[1] = math.nan  # all-nan image
    images[3, 7] = math.nan  # one nan pixel
    options = {"steps": 3} if METHODS[name].function in ("optimize", "hybrid") else {}
    result = run_method(name, decoder, images, model=FakeVAE(decoder, N_OUT), **options)
    bad = torch.isnan(result.z).all(1)
    assert bad.tolist() == [False, True, False, True, False, False]
    assert torch.isfinite(result.z[~bad]).all()
    z_true = torch.ones(6, 4, dtype=torch.float64)
    assert latent_recovery(result.z, z_true)["nonfinite"] == 2


@pytest.mark.parametrize("method", ["lm", "lbfgs", "adam"])
def test_a_start_that_cannot_move_is_not_returned_as_recovered(decoder, x, method):
    # Before: LM and L-BFGS returned their finite random start on an all-nan image, the hybrid zeros.
    images = torch.full_like(x[:2], math.nan)
    assert torch.isnan(optimize(decoder, images, method=method, steps=3).z).all()
    assert torch.isnan(_hybrid(decoder, images, start=closed_form(decoder, images), refine="lm", steps=3).z).all()
