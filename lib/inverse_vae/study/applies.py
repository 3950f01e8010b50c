"""Which sections of notebooks 02-05 apply to a run's model: `applies = of(model)`, then `if applies("prior"):`
runs a section, or prints "does not apply: <why>" once and writes no metric for it. The sections on the
original's two obstacles keep the names notebook 04 gives them; what decides them is a property of a layer kind
(core/table.py), and their reasons name the kinds that have it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.table import ends_in_bernoulli, has_kind, kind_names
from .sentences import say

# Section -> the kind property that makes it apply: a Bernoulli head (its inverse's -inf at a 0 pixel), a
# hidden kind with an interval domain (boxed), a kind with the original's two-sided clamp.
_BY_KIND = {"sigmoid": "bernoulli", "tanh": "boxed", "clamp": "two_sided"}
_KINDS_NAMED = {"bernoulli": kind_names("bernoulli"), "bernoulli_inverse": kind_names("bernoulli", "inverse_name"),
                "boxed": kind_names("boxed"), "boxed_inverse": kind_names("boxed", "inverse_name"),
                "two_sided": kind_names("two_sided")}
WHY_NOT = {section: say("why_not", section=section, **_KINDS_NAMED)
           for section in ("kl", "prior", "bce", "sigmoid", "tanh", "clamp")}


@dataclass(frozen=True)
class _Applies:
    variational: bool  # a VAE: a prior and a KL term
    bce: bool  # the decoder ends in a Bernoulli head: outputs in [0, 1] like the images
    kinds: dict[str, bool]  # _BY_KIND's section -> whether the decoder has a kind with its property
    decoder: str  # its layers, for the reader

    @property
    def tanh(self) -> bool:  # notebook 04 asks applies.tanh
        return self.kinds["tanh"]

    def holds(self, section: str) -> bool:
        return {"kl": self.variational, "prior": self.variational, "bce": self.bce, **self.kinds}[section]

    def __call__(self, section: str) -> bool:
        if self.holds(section):
            return True
        print(say("does_not_apply", why=WHY_NOT[section]))
        return False

    def describe(self) -> str:
        return say("model_applies", kind="VAE" if self.variational else "deterministic autoencoder", decoder=self.decoder,
                   skipped=[WHY_NOT[s] for s in WHY_NOT if not self.holds(s)])


def of(model) -> _Applies:
    d = model.decoder
    return _Applies(bool(model.variational), ends_in_bernoulli(d), {s: has_kind(d, role) for s, role in _BY_KIND.items()},
                   " -> ".join(type(layer).__name__ for layer in d))
