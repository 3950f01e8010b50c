"""Every check of a config that needs the study's code, in one call, before any work starts.

core.config checks the schema and imports no model code; what only the network, the trainer or
the inversion code can judge is checked by them, and gathered here: the architecture
(core.layers: allowed layer names, each layer built, sizes that chain, an invertible decoder),
the optimizer and scheduler keywords (core.training) and the method names (inversion.methods).
"""
from __future__ import annotations

from pathlib import Path

from ..core.config import Config, MethodsConfig, load_config
from ..core.layers import check_architecture
from ..core.training import check_training_options
from ..errors import ParamsError


def check_methods(methods: MethodsConfig) -> None:
    """methods.names, methods.noise_names and the keys of methods.overrides must name METHODS."""
    from ..inversion.methods import METHODS

    for key, names in (("names", methods.names), ("noise_names", methods.noise_names),
                       ("overrides", methods.overrides)):
        unknown = [n for n in (names or ()) if n not in METHODS]
        if unknown:
            raise ParamsError(f"methods.{key}: unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")


def check_config(config: Config) -> None:
    """Raise ParamsError, one line naming the key or layer, for what the schema alone cannot see.

    Builds the model's stacks once to try them, which draws from torch's global generator
    (as validation always has).
    """
    check_architecture(config.model.architecture)
    check_training_options(config.train)
    check_methods(config.methods)


def load_checked_config(path: str | Path) -> Config:
    """load_config then check_config: every refusal is one line that starts with the file's path."""
    config = load_config(path)
    try:
        check_config(config)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return config
