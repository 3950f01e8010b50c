"""Every check of a config that needs the study's code, in one call, before any work starts.

core.config checks the schema and imports no model code; what only the network, the trainer or
the inversion code can judge is checked by them, and gathered here: the architecture
(core.layers: allowed layer names, each layer built, sizes that chain, an invertible decoder),
a reconstruction loss the decoder's output range allows, the optimizer and scheduler keywords
(core.training) and the method names (inversion.methods); and what keeps a run inside its
folder: a plain run name and paths that stay in reports/<run>/.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path, PurePath

from ..core.config import Config, MethodsConfig, load_config, run_name
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


# A run name becomes a folder under reports/: no separators, no "..", nothing hidden.
RUN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def path_problem(value: str) -> str | None:
    """Why a params path would leave the run folder (absolute, or climbing out with ..), else None."""
    if PurePath(value).is_absolute() or value.startswith("~"):
        return f"must be a path relative to the run folder reports/<run>/, got {value!r}"
    normal = posixpath.normpath(value.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return f"must stay inside the run folder reports/<run>/, got {value!r} (it climbs out with '..')"
    return None


def check_run_paths(config: Config) -> None:
    """Every path the params give (checkpoints, progress figures, the model to test, results)
    resolves inside reports/<run>/, so a run never writes into the project or elsewhere."""
    for key, value in (("train.model_path", config.train.model_path),
                       ("train.progress_path", config.train.progress_path),
                       ("test.model_path", config.test.model_path),
                       ("test.results_path", config.test.results_path)):
        problem = path_problem(value)
        if problem:
            raise ParamsError(f"{key}: {problem}")


def check_run_name(path: str | Path) -> None:
    """The params file's stem names the run folder: refuse what is not a plain name."""
    name = run_name(path)
    if not RUN_NAME.match(name):
        raise ParamsError(f"run name {name!r} (the params file's name without .yaml) must be a plain name: "
                          "letters, digits, '-', '_' and '.', not starting with '.'; rename the file")


def check_loss_fits_decoder(config: Config) -> None:
    """bceloss needs outputs in [0, 1]: refuse it for a decoder that does not end in Sigmoid (torch would
    refuse the first batch). The original's deterministic autoencoder ends in Linear and trains on mseloss."""
    last = config.model.architecture.decoder[-1].name
    if config.train.reconstruction_loss == "bceloss" and last != "Sigmoid":
        raise ParamsError(f"train.loss[0]: bceloss needs outputs in [0, 1], but model.architecture.decoder ends "
                          f"with {last}, not Sigmoid; end the decoder with Sigmoid, or use mseloss")


def check_config(config: Config) -> None:
    """Raise ParamsError, one line naming the key or layer, for what the schema alone cannot see.

    Builds the model's stacks once to try them, which draws from torch's global generator
    (as validation always has).
    """
    check_run_paths(config)
    check_architecture(config.model.architecture)
    check_loss_fits_decoder(config)
    check_training_options(config.train)
    check_methods(config.methods)


def load_checked_config(path: str | Path) -> Config:
    """load_config then check_config: every refusal is one line that starts with the file's path."""
    config = load_config(path)
    try:
        check_run_name(path)
        check_config(config)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return config
