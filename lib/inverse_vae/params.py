"""Load and validate a study params file (the original config.yaml schema plus new sections).

Validation runs before any work starts and stops at the first problem with one line that
names the key (``train.optim.learning_rate: ...``). The original schema is accepted
unchanged; the sections this study adds (``seed``, ``data``, ``evaluate``, ``invert``) are
optional and filled with defaults.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ParamsError
from .layers import check_architecture

DEVICES = ("cuda", "mps", "cpu", "auto")
RECONSTRUCTION_LOSSES = ("bceloss", "mseloss")
REGULARIZATION_LOSSES = ("regularizationloss",)
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULERS = ("steplr", "multisteplr", "cosineannealinglr", "cycliclr", "exponentiallr")


# --- small field checkers: each returns an error message or None --------------------------

def _int(minimum: int | None = None) -> Callable[[Any], str | None]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {type(v).__name__} {v!r}"
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}, got {v}"
        return None
    return check


def _float(positive: bool = False, minimum: float | None = None, maximum: float | None = None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {type(v).__name__} {v!r}"
        if positive and not v > 0:
            return f"must be > 0, got {v}"
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}, got {v}"
        if maximum is not None and v > maximum:
            return f"must be <= {maximum}, got {v}"
        return None
    return check


def _str(choices: tuple[str, ...] | None = None, lower: bool = False):
    def check(v):
        if not isinstance(v, str) or not v:
            return f"must be a non-empty string, got {v!r}"
        if choices is not None and (v.lower() if lower else v) not in choices:
            return f"unknown value {v!r}; allowed: {', '.join(choices)}"
        return None
    return check


def _optional(check):
    return lambda v: None if v is None else check(v)


def _mapping_or_none(v):
    return None if v is None or isinstance(v, dict) else f"must be a mapping of keyword arguments, got {v!r}"


def _loss_list(v):
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(s, str) for s in v):
        return f"must be a list of two names [reconstruction, regularization], got {v!r}"
    rec, reg = (s.lower() for s in v)
    if rec not in RECONSTRUCTION_LOSSES:
        return f"unknown reconstruction loss {v[0]!r}; allowed: {', '.join(RECONSTRUCTION_LOSSES)}"
    if reg not in REGULARIZATION_LOSSES:
        return f"unknown regularization loss {v[1]!r}; allowed: {', '.join(REGULARIZATION_LOSSES)}"
    return None


def _unit_interval_pair(v):
    if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in v)
            or not 0 <= v[0] < v[1] <= 1):
        return f"must be [lo, hi] with 0 <= lo < hi <= 1, got {v!r}"
    return None


CUDA_GRAPH_MODES = ("auto", "on", "off")


def _cuda_graph_mode(v):
    if isinstance(v, bool):  # YAML reads a bare on/off as true/false
        return None
    return _str(CUDA_GRAPH_MODES)(v)


def _method_names(v):
    from .methods import METHODS

    if not isinstance(v, list) or not v or not all(isinstance(n, str) for n in v):
        return f"must be a non-empty list of method names, got {v!r}"
    unknown = [n for n in v if n not in METHODS]
    return f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}" if unknown else None


def _method_overrides(v):
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(o, dict) for o in v.values()):
        return f"must map method names to option mappings, got {v!r}"
    return _method_names(list(v))


def _positive_list(v):
    if not isinstance(v, list) or not v or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0
                                                   for t in v):
        return f"must be a non-empty list of positive numbers, got {v!r}"
    return None


def _layer_list(v):
    return None if isinstance(v, list) and v else f"must be a non-empty list of layers, got {v!r}"


REQUIRED = object()  # marks keys of the original schema, which a file must give

# The schema: nested dicts of (checker, default). REQUIRED keys come from the original config.
SCHEMA: dict[str, Any] = {
    "device": (_str(DEVICES, lower=True), REQUIRED),
    "train": {
        "batch_size": (_int(1), REQUIRED),
        "train_epochs": (_int(1), REQUIRED),
        "loss": (_loss_list, REQUIRED),
        "optim": {
            "name": (_str(OPTIMIZERS, lower=True), REQUIRED),
            "learning_rate": (_float(positive=True), REQUIRED),
            "others": (_mapping_or_none, None),
        },
        "lr_scheduler": {
            "name": (_str(SCHEDULERS, lower=True), REQUIRED),
            "others": (_mapping_or_none, None),
        },
        "alpha": (_float(minimum=0.0), REQUIRED),
        "model_path": (_str(), REQUIRED),
        "progress_path": (_str(), REQUIRED),
        "plot_epochs": (_int(1), REQUIRED),
        # Added by this study: train towards lo + (hi - lo) * x instead of x (null: x itself).
        "target_range": (_optional(_unit_interval_pair), None),
        # Added by this study: capture the training step as a CUDA graph (auto: on CUDA with adam).
        "cuda_graph": (_cuda_graph_mode, "auto"),
    },
    "model": {
        "architecture": {
            "encoder": {
                "conv": (_layer_list, REQUIRED),
                "mean": (_layer_list, REQUIRED),
                "log_var": (_layer_list, REQUIRED),
            },
            "decoder": (_layer_list, REQUIRED),
        },
    },
    "test": {
        "batch_size": (_int(1), REQUIRED),
        "n_components": (_int(1), REQUIRED),
        "model_path": (_str(), REQUIRED),
        "results_path": (_str(), REQUIRED),
    },
    # --- sections added by this study ---
    "seed": (_int(0), 0),
    "data": {
        "root": (_str(), "data"),  # relative to the project root
        "train_subset": (_optional(_int(1)), None),  # first N of the 60k training images
        "test_subset": (_optional(_int(1)), None),  # first N of the 10k test images
        "val_fraction": (_float(minimum=0.01, maximum=0.5), 0.1),
    },
    "evaluate": {
        "tsne_samples": (_optional(_int(10)), None),  # None: the whole test set
        "probe_max_iter": (_int(10), 1000),
    },
    "invert": {
        "n_prior": (_int(1), 10000),  # realizable regime: z ~ N(0, I) samples
        "examples_per_digit": (_int(1), 3),  # columns per digit in the image grids
    },
    "methods": {
        "names": (_optional(_method_names), None),  # None: every configuration in methods.METHODS
        "real_subset": (_optional(_int(1)), None),  # first N test images (None: all)
        "realizable_n": (_int(1), 1000),  # prior samples for the realizable comparison
        "noise_levels": (_positive_list, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
        "noise_draws": (_int(1), 200),
        "noise_names": (_optional(_method_names), None),
        "overrides": (_method_overrides, None),  # {method name: {option: value}}, e.g. fewer steps
    },
    "failure": {
        "squeeze_range": (_unit_interval_pair, [0.1, 0.9]),  # the squeezed-targets variant
        "delta": (_float(positive=True, maximum=0.5), 1e-3),  # box |h| <= 1 - delta of constrained solves
        "fixes_subset": (_optional(_int(1)), None),  # images (real and realizable) for the fixes; None: all
    },
}


def _closest(key: str, allowed) -> str:
    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _validate(node: dict, schema: dict, where: str) -> dict:
    """Check `node` against `schema`; return a copy with defaults filled in."""
    if not isinstance(node, dict):
        raise ParamsError(f"{where or 'params'}: must be a mapping, got {node!r}")
    for key in node:
        if key not in schema:
            name = f"{where}.{key}" if where else str(key)
            raise ParamsError(f"{name}: unknown key{_closest(str(key), schema)}")
    out = {}
    for key, spec in schema.items():
        name = f"{where}.{key}" if where else key
        if isinstance(spec, dict):
            if key not in node:
                if _has_required(spec):
                    raise ParamsError(f"{name}: missing section")
                out[key] = _validate({}, spec, name)
            else:
                out[key] = _validate(node[key], spec, name)
            continue
        check, default = spec
        if key not in node:
            if default is REQUIRED:
                raise ParamsError(f"{name}: missing key")
            out[key] = copy.deepcopy(default)
            continue
        problem = check(node[key])
        if problem:
            raise ParamsError(f"{name}: {problem}")
        out[key] = node[key]
    return out


def _has_required(schema: dict) -> bool:
    return any(_has_required(s) if isinstance(s, dict) else s[1] is REQUIRED for s in schema.values())


def _check_training_objects(params: dict) -> None:
    """Build the optimizer and scheduler on a dummy tensor so bad keyword arguments fail now."""
    import torch

    from .training import make_optimizer, make_scheduler

    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = make_optimizer(dummy, params["train"]["optim"])
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"train.optim.others: {exc}") from None
    try:
        make_scheduler(optimizer, params["train"]["lr_scheduler"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ParamsError(f"train.lr_scheduler.others: {exc}") from None


def validate_params(raw: Any) -> dict:
    """Validate a parsed params mapping; return it with defaults filled in."""
    params = _validate(raw, SCHEMA, "")
    mode = params["train"]["cuda_graph"]
    if isinstance(mode, bool):
        params["train"]["cuda_graph"] = "on" if mode else "off"
    check_architecture(params["model"]["architecture"], "model.architecture")
    _check_training_objects(params)
    return params


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file. Raises ParamsError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ParamsError(f"{path}: invalid YAML{at}: {problem}") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None
    try:
        params = validate_params(raw)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    params["_source"] = str(path)
    return params


def run_name(params_path: str | Path) -> str:
    """The run's folder name under reports/: the params file's stem (default.yaml -> default)."""
    return Path(params_path).stem
