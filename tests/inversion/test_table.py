"""The table of decoder layers (core.table): one entry per kind serves the allow-list, the
chain, the solvers and the attribution; adding a kind is adding one entry."""
import math

import pytest
import torch
import torch.nn.functional as F
from decoders import seeded_decoder
from torch import nn

from inverse_vae.core import table
from inverse_vae.core.model import _ALLOWED_LAYERS
from inverse_vae.errors import StudyError
from inverse_vae.inversion.attribution import attribute_failures
from inverse_vae.inversion.chain import InverseChain, realizable
from inverse_vae.inversion.methods import _hybrid, closed_form, layerwise_constrained
from inverse_vae.metrics import relative_errors
from inverse_vae.study.invert import saturation_points

# Softsign, a/(1 + |a|): bounded to (-1, 1) and strictly increasing, so invertible.
SOFTSIGN = table.LayerKind(
    "softsign", forward=lambda p, a: F.softsign(a), output_range=(-1.0, 1.0),
    inverse=lambda p, y: y / (1 - y.abs()), derivative=lambda p, a, y: (1 - y.abs()) ** 2,
    inverse_slope=lambda p, y: 1 / (1 - y.abs()) ** 2)


def softsign_decoder():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16, bias=False), nn.Softsign(), nn.Linear(16, 32), nn.Softsign(),
                         nn.Linear(32, 50, bias=False), nn.Sigmoid()).double()


def test_every_invertible_kind_is_an_allowed_layer():
    assert all(_ALLOWED_LAYERS[cls.__name__] is cls for cls in table.KINDS)
    assert not set(table._REFUSED) & set(table.KINDS)


def test_a_kind_missing_from_the_table_is_refused():
    with pytest.raises(StudyError, match=r"decoder layer 3 \(Softsign\) has no inverse"):
        InverseChain(softsign_decoder())


def test_adding_a_kind_is_one_entry(monkeypatch):
    monkeypatch.setitem(table.KINDS, nn.Softsign, SOFTSIGN)
    decoder = softsign_decoder()
    z = torch.randn(40, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = realizable(decoder, z, torch.float64)

    # The chain: exact without a clamp, and the clamp margin applies to the new bounded kind too.
    assert relative_errors(InverseChain(decoder).invert(x, eps=0), z).max() < 1e-10
    trace = InverseChain(decoder).trace(x, eps=0.25)
    assert [t.step.eps for t in trace if t.step.kind is SOFTSIGN] == [0.25, 0.25]
    # The closed-form method, the layer-wise solve (its box) and LM (the derivative) use it.
    assert relative_errors(closed_form(decoder, x, eps=0).z, z).max() < 1e-10
    start = layerwise_constrained(decoder, x)
    assert torch.isfinite(start.z).all()
    assert all(h.abs().max() <= 1 - 1e-3 for h in start.info["hidden"])  # boxed inside Softsign's range
    refined = _hybrid(decoder, x, start=start, refine="lm", steps=100)
    assert relative_errors(refined.z, z).max() < 1e-8
    # The attribution reads its range: a wide clamp is named as the cause.
    result = attribute_failures(decoder, z, x, eps=0.45, eps_head=0.0, threshold=1e-6)
    assert result["n_failed"] > 0
    assert all((r["type"], r["cause"]) == ("Softsign", "clamped") for r in result["counts"])


ELU = table.KINDS[nn.ELU]


def test_elu_is_one_entry_whose_inverse_and_derivative_are_its_own():
    a = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    y = ELU.forward(None, a)
    assert torch.equal(y, F.elu(a))
    kept = a > -5  # below, the inverse amplifies the rounding of e^a - 1 by e^-a (past 37 nothing is left)
    assert torch.allclose(ELU.inverse(None, y.detach())[kept], a.detach()[kept], rtol=1e-12, atol=1e-12)
    (autograd,) = torch.autograd.grad(y.sum(), a)
    assert torch.allclose(ELU.derivative(None, a.detach(), y.detach()), autograd, rtol=1e-12, atol=0)
    slope = ELU.inverse_slope(None, y.detach())
    assert torch.allclose((slope * autograd)[kept], torch.ones_like(slope)[kept]) and slope.dtype == torch.float64
    # Its saturation: one-sided, at -1, where the float32 inverse amplifies rounding (the side of negative a).
    assert (ELU.output_range, ELU.ends, ELU.two_sided, ELU.boxed, ELU.bernoulli) == ((-1.0, math.inf), ((-1.0, -1),),
                                                                                     False, False, False)
    assert torch.equal(ELU.amplifying_side(a.detach()), -a.detach())


def test_elu_clamps_at_its_one_end_and_refuses_what_it_cannot_invert():
    assert ELU.check_eps(1e-3) == 1e-3 and ELU.clamp_bounds(1e-3, torch.float64) == (-1 + 1e-3, math.inf)
    y = torch.tensor([[-1.0, -0.9995, 0.5, 1e6]], dtype=torch.float64)
    assert torch.equal(ELU.clamp(y, 1e-3), torch.tensor([[-0.999, -0.999, 0.5, 1e6]], dtype=torch.float64))
    assert ELU.saturated(y).tolist() == [True] and ELU.clamped(y, 1e-3).tolist() == [True]
    assert torch.isinf(ELU.inverse(None, y)[0, 0]) and torch.isfinite(ELU.inverse(None, ELU.clamp(y, 1e-3))).all()
    with pytest.raises(StudyError, match=r"elu inverse eps must be in \[0, inf\), got -0.1"):
        ELU.check_eps(-0.1)
    with pytest.raises(StudyError, match=r"decoder layer 1 \(ELU\): alpha 0.5 is not 1"):
        InverseChain(nn.Sequential(nn.Linear(4, 8), nn.ELU(alpha=0.5)))


def test_a_decoder_with_elu_inverts_by_the_chain_and_the_methods():
    decoder = seeded_decoder([4, 16, 32, 50], hidden=nn.ELU)
    z = torch.randn(40, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = realizable(decoder, z, torch.float64)
    assert relative_errors(InverseChain(decoder).invert(x, eps=0), z).max() < 1e-10
    assert relative_errors(InverseChain(decoder).invert(x, eps=1e-3), z).max() < 1e-2  # clamped, still close
    assert [t.step.eps for t in InverseChain(decoder).trace(x, eps=1e-3) if t.step.kind is ELU] == [1e-3, 1e-3]
    assert relative_errors(closed_form(decoder, x, eps=0).z, z).max() < 1e-10
    start = layerwise_constrained(decoder, x)
    assert torch.isfinite(start.z).all() and all(h.min() >= -1 + 1e-3 for h in start.info["hidden"])
    assert relative_errors(_hybrid(decoder, x, start=start, refine="lm", steps=100).z, z).max() < 1e-8
    # The study's analyses read it from the table: its saturation point, and the penalty's side.
    points = saturation_points(decoder)
    assert set(points["float32"]) == {"elu_to_-1", "sigmoid_to_1", "sigmoid_to_0"}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        at = torch.tensor(points[name]["elu_to_-1"], dtype=dtype)
        assert F.elu(at).item() == -1.0 and F.elu(at * (1 - 1e-3)).item() > -1.0
