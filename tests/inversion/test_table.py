"""The table of decoder layers (inversion.table): one entry per kind serves the allow-list, the
chain, the solvers and the attribution; adding a kind is adding one entry."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inverse_vae.core.model import ALLOWED_LAYERS
from inverse_vae.errors import StudyError
from inverse_vae.inversion import table
from inverse_vae.inversion.attribution import attribute_failures
from inverse_vae.inversion.chain import InverseChain, realizable
from inverse_vae.inversion.methods import closed_form, hybrid, layerwise_constrained
from inverse_vae.metrics import relative_errors

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
    assert all(ALLOWED_LAYERS[cls.__name__] is cls for cls in table.KINDS)
    assert not set(table.REFUSED) & set(table.KINDS)


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
    refined = hybrid(decoder, x, start=start, refine="lm", steps=100)
    assert relative_errors(refined.z, z).max() < 1e-8
    # The attribution reads its range: a wide clamp is named as the cause.
    result = attribute_failures(decoder, z, x, eps=0.45, eps_sigmoid=0.0, threshold=1e-6)
    assert result["n_failed"] > 0
    assert all((r["type"], r["cause"]) == ("Softsign", "clamped") for r in result["counts"])
