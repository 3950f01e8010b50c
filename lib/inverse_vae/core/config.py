"""Load and validate a study params file into a frozen, typed Config (a leaf: no torch, no model code).

The original config.yaml schema is accepted unchanged; the sections this study adds (``hypothesis``,
``seed``, ``data``, ``evaluate``, ``invert``, ``methods``, ``failure``) are optional and filled with
defaults. Validation stops at the first problem with one line that names the key
(``train.optim.learning_rate: ...``). What needs the network itself (layer names against the
allow-list, sizes that chain, an invertible decoder, optimizer keywords, method names) is
checked where that code lives; ``inverse_vae.runs.checks.check_config`` runs all of it.

Field names are the params file's key names, so ``config.train.optim.learning_rate`` is
``train: optim: learning_rate`` in the YAML. Lists become tuples and mappings read-only views.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..constants import OPTIMIZERS, SCHEDULERS
from ..errors import ParamsError

DEVICES = ("cuda", "mps", "cpu", "auto")
RECONSTRUCTION_LOSSES = ("bceloss", "mseloss")
REGULARIZATION_LOSSES = ("regularizationloss",)
CUDA_GRAPH_MODES = ("auto", "on", "off")

# A refusal quotes at most this many characters of the bad value: one readable line, whatever the file holds.
MAX_QUOTED = 60


def _cut(text: str) -> str:
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def _short(value: Any) -> str:
    """repr(value) cut to MAX_QUOTED characters (repr also escapes newlines, so the line stays one)."""
    return _cut(repr(value))


# --- small field checkers: each returns an error message or None --------------------------

def _int(minimum: int | None = None) -> Callable[[Any], str | None]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {type(v).__name__} {_short(v)}"
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}, got {v}"
        return None
    return check


def _float(positive: bool = False, minimum: float | None = None, maximum: float | None = None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {type(v).__name__} {_short(v)}"
        if not math.isfinite(v):  # .nan and .inf slip past the comparisons below (nan > 0 is merely false)
            return f"must be a finite number, got {v}"
        if positive and not v > 0:
            return f"must be > 0, got {v}"
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}, got {v}"
        if maximum is not None and v > maximum:
            return f"must be <= {maximum}, got {v}"
        return None
    return check


def _str(choices=None, lower: bool = False):
    def check(v):
        if not isinstance(v, str) or not v:
            return f"must be a non-empty string, got {_short(v)}"
        if choices is not None and (v.lower() if lower else v) not in choices:
            return f"unknown value {_short(v)}; allowed: {', '.join(choices)}"
        return None
    return check


def _bool(v):
    # Strict: a quoted 'no' is a non-empty string, which Python (and so torch) would take as true.
    return None if isinstance(v, bool) else f"must be true or false, got {type(v).__name__} {_short(v)}"


def _int_list(minimum: int):
    def check(v):
        if not isinstance(v, list) or not v:
            return f"must be a non-empty list of integers, got {_short(v)}"
        return next((f"[{i}] {problem}" for i, t in enumerate(v) if (problem := _int(minimum)(t))), None)
    return check


def _optional(check):
    return lambda v: None if v is None else check(v)


def _mapping_or_none(v):
    return None if v is None or isinstance(v, dict) else f"must be a mapping of keyword arguments, got {_short(v)}"


def _loss_list(v):
    """[reconstruction] (a deterministic autoencoder, no KL term) or [reconstruction, regularization] (a VAE)."""
    if not isinstance(v, list) or len(v) not in (1, 2) or not all(isinstance(s, str) for s in v):
        return (f"must be a list of one name [reconstruction] (a deterministic autoencoder) or two "
                f"[reconstruction, regularization] (a VAE), got {_short(v)}")
    if v[0].lower() not in RECONSTRUCTION_LOSSES:
        return f"unknown reconstruction loss {_short(v[0])}; allowed: {', '.join(RECONSTRUCTION_LOSSES)}"
    if len(v) == 2 and v[1].lower() not in REGULARIZATION_LOSSES:
        return f"unknown regularization loss {_short(v[1])}; allowed: {', '.join(REGULARIZATION_LOSSES)}"
    return None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # YAML's true/false are ints to Python


def _unit_interval_pair(v):
    if not isinstance(v, list) or len(v) != 2 or not all(_is_number(t) for t in v) or not 0 <= v[0] < v[1] <= 1:
        return f"must be [lo, hi] with 0 <= lo < hi <= 1, got {_short(v)}"
    return None


def _cuda_graph_mode(v):
    if isinstance(v, bool):  # YAML reads a bare on/off as true/false
        return None
    return _str(CUDA_GRAPH_MODES)(v)


def _name_list(v):
    # Only the shape: which names exist is the inversion code's to say (runs.checks.check_methods).
    if not isinstance(v, list) or not v or not all(isinstance(n, str) for n in v):
        return f"must be a non-empty list of method names, got {_short(v)}"
    return None


def _method_overrides(v):
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(o, dict) for o in v.values()):
        return f"must map method names to option mappings, got {_short(v)}"
    return None


def _positive_list(v):
    if not isinstance(v, list) or not v or not all(_is_number(t) and t > 0 for t in v):
        return f"must be a non-empty list of positive numbers, got {_short(v)}"
    return None


def _penalty_mapping(v):
    # Only the shape here: _check_preactivation_penalty names the key of a bad bound or weight.
    return None if v is None or isinstance(v, dict) else f"must be a mapping {{bound: B, weight: W}} or null, got {_short(v)}"


def _layer_list(v):
    return None if isinstance(v, list) and v else f"must be a non-empty list of layers, got {_short(v)}"


# Keywords of torch layers and optimizers that are flags: strict booleans, since a quoted 'no' is a
# non-empty string that torch takes as true (bias: 'no' builds a layer with a bias).
FLAGS = frozenset({"bias", "inplace", "affine", "track_running_stats", "elementwise_affine", "amsgrad",
                   "nesterov", "maximize", "capturable", "differentiable", "cycle_momentum", "three_phase"})
OPTIONAL_FLAGS = frozenset({"foreach", "fused"})  # may also be null: torch then picks the implementation

# Scheduler keywords torch accepts but then fails on (StepLR step_size 0: ZeroDivisionError after the
# first epoch) or obeys silently (a negative step_size decays at every epoch); unlisted ones are torch's.
SCHEDULER_OPTIONS = {
    "steplr": {"step_size": _int(1), "gamma": _float(positive=True)},
    "multisteplr": {"milestones": _int_list(1), "gamma": _float(positive=True)},
    "cosineannealinglr": {"T_max": _int(1), "eta_min": _float(minimum=0.0)},
    "cycliclr": {"step_size_up": _int(1), "step_size_down": _optional(_int(1)), "gamma": _float(positive=True)},
    "exponentiallr": {"gamma": _float(positive=True)},
}

# train.preactivation_penalty: where the penalty starts (|a| of a Tanh input, a of a Sigmoid's) and its
# factor in the loss; a weight of 0 is refused because null says "no penalty" in one way only.
PENALTY_OPTIONS = {"bound": _float(positive=True), "weight": _float(positive=True)}

# Layer sizes are bounded so a typo such as [512, 100000000000] is refused before torch allocates it
# (check-params builds each layer to try it). Positional arguments name the sizes in this order.
MAX_FEATURES = 65_536
MAX_LAYER_WEIGHTS = 1 << 26  # 256 MiB of float32: far above any MNIST VAE, far below exhausting memory
SIZE_ARGUMENTS = {"Linear": ("in_features", "out_features"), "BatchNorm1d": ("num_features",),
                  "LayerNorm": ("normalized_shape",)}

# Deeper than any params file needs (a layer's args sit 8 levels down); bounds the YAML composer's recursion.
MAX_DEPTH = 32

REQUIRED = object()  # marks keys of the original schema, which a file must give

# The schema: nested dicts of (checker, default). REQUIRED keys come from the original config.
SCHEMA: dict[str, Any] = {
    "device": (_str(DEVICES, lower=True), REQUIRED),
    "train": {
        "batch_size": (_int(1), REQUIRED),
        "train_epochs": (_int(1), REQUIRED),
        "loss": (_loss_list, REQUIRED),
        "optim": {
            "name": (_str(tuple(OPTIMIZERS), lower=True), REQUIRED),
            "learning_rate": (_float(positive=True), REQUIRED),
            "others": (_mapping_or_none, None),
        },
        "lr_scheduler": {
            "name": (_str(tuple(SCHEDULERS), lower=True), REQUIRED),
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
        # Added by this study: weight * mean(relu(side - bound)^2) over the decoder's Tanh and Sigmoid inputs a
        # (side |a| for Tanh, a for Sigmoid), added to the loss so that the closed-form inverse stays well
        # posed in float32 (losses.amplifying_side says why; null: none).
        "preactivation_penalty": (_penalty_mapping, None),
    },
    "model": {
        "architecture": {
            "encoder": {
                "conv": (_layer_list, REQUIRED),
                # A VAE's two heads; a deterministic autoencoder (train.loss of one name) has neither.
                "mean": (_optional(_layer_list), None),
                "log_var": (_optional(_layer_list), None),
            },
            "decoder": (_layer_list, REQUIRED),
        },
    },
    "test": {
        "batch_size": (_int(1), REQUIRED),
        "n_components": (_int(1), REQUIRED),
        "model_path": (_str(), REQUIRED),
        "results_path": (_str(), REQUIRED),
        # Added by this study: let notebooks 02-05 use a checkpoint of an epoch before train_epochs.
        "allow_intermediate": (_bool, False),
    },
    # --- sections added by this study ---
    # What the run is expected to show, stated before its results (free text; shapes no weight).
    "hypothesis": (_optional(_str()), None),
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
        "names": (_optional(_name_list), None),  # None: every configuration in methods.METHODS
        "real_subset": (_optional(_int(1)), None),  # first N test images (None: all)
        "realizable_n": (_int(1), 1000),  # prior samples for the realizable comparison
        # fewer for the slow gradient-descent methods (MethodSpec.slow), whose rates carry a 95% bound
        "slow_n": (_optional(_int(1)), None),  # None: as many as the others
        "noise_levels": (_positive_list, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
        "noise_draws": (_int(1), 200),
        "noise_names": (_optional(_name_list), None),
        "overrides": (_method_overrides, None),  # {method name: {option: value}}, e.g. fewer steps
    },
    "failure": {
        # the run whose model learnt squeezed targets (04 compares its chain); null: none
        "squeezed_params": (_optional(_str()), "params/squeezed.yaml"),
        "delta": (_float(positive=True, maximum=0.5), 1e-3),  # box |h| <= 1 - delta of constrained solves
        "fixes_subset": (_optional(_int(1)), None),  # images (real and realizable) for the fixes; None: all
    },
}


# --- the schema walk -----------------------------------------------------------------------

def _closest(key: str, allowed) -> str:
    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _validate(node: Any, schema: dict, where: str) -> dict:
    """Check `node` against `schema`; return a copy with defaults filled in."""
    if not isinstance(node, dict):
        raise ParamsError(f"{where or 'params'}: must be a mapping, got {_short(node)}")
    for key in node:
        if key not in schema:
            name = f"{where}.{key}" if where else str(key)
            raise ParamsError(f"{_cut(name)}: unknown key{_closest(str(key), schema)}")
    return {key: _validate_key(node, key, spec, f"{where}.{key}" if where else key)
            for key, spec in schema.items()}


def _validate_key(node: dict, key: str, spec, name: str):
    if isinstance(spec, dict):
        if key in node:
            return _validate(node[key], spec, name)
        if _has_required(spec):
            raise ParamsError(f"{name}: missing section")
        return _validate({}, spec, name)
    check, default = spec
    if key not in node:
        if default is REQUIRED:
            raise ParamsError(f"{name}: missing key")
        return copy.deepcopy(default)
    problem = check(node[key])
    if problem:
        raise ParamsError(f"{name}: {problem}")
    return node[key]


def _has_required(schema: dict) -> bool:
    return any(_has_required(s) if isinstance(s, dict) else s[1] is REQUIRED for s in schema.values())


def _normalize(params: dict) -> dict:
    """One spelling per value: lower-cased names, cuda_graph as on/off rather than a YAML boolean."""
    params["device"] = params["device"].lower()
    train = params["train"]
    for section in ("optim", "lr_scheduler"):
        train[section]["name"] = train[section]["name"].lower()
    train["loss"] = [name.lower() for name in train["loss"]]
    if isinstance(train["cuda_graph"], bool):
        train["cuda_graph"] = "on" if train["cuda_graph"] else "off"
    return params


# --- read-only values ----------------------------------------------------------------------

def freeze(value: Any) -> Any:
    """Lists to tuples and mappings to read-only views, all the way down."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze: plain dicts and lists, ready for JSON, YAML or a torch constructor."""
    if isinstance(value, LayerSpec):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


# --- the typed tree ------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSpec:
    """One entry of a layer list, `{Linear: {args: [784, 512], bias: False}}`; built by core.layers."""

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=_empty)

    def to_dict(self) -> dict:
        options = {"args": thaw(self.args)} if self.args else {}
        options.update(thaw(self.kwargs))
        return {self.name: options or None}


LayerList = tuple[LayerSpec, ...]


@dataclass(frozen=True)
class OptimConfig:
    name: str  # lower-cased, a key of constants.OPTIMIZERS
    learning_rate: float
    others: Mapping[str, Any] | None  # keyword arguments of the torch optimizer


@dataclass(frozen=True)
class SchedulerConfig:
    name: str  # lower-cased, a key of constants.SCHEDULERS
    others: Mapping[str, Any] | None


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int
    train_epochs: int
    # Lower-cased, as the original lists them: [reconstruction, regularization] for a VAE, or
    # [reconstruction] alone for a deterministic autoencoder (no KL term, `alpha` unused).
    loss: tuple[str, ...]
    optim: OptimConfig
    lr_scheduler: SchedulerConfig
    alpha: float
    model_path: str
    progress_path: str
    plot_epochs: int
    target_range: tuple[float, float] | None
    cuda_graph: str  # auto, on or off
    preactivation_penalty: Mapping[str, float] | None  # {bound, weight}, or None: the original objective

    @property
    def reconstruction_loss(self) -> str:
        """'bceloss' or 'mseloss': the first of the loss names."""
        return self.loss[0]

    @property
    def variational(self) -> bool:
        """Whether the loss has a KL term (a VAE); False for a deterministic autoencoder."""
        return len(self.loss) == 2


@dataclass(frozen=True)
class EncoderConfig:
    """model.architecture.encoder: the shared trunk (conv) and a VAE's two heads, as layer lists.

    A deterministic autoencoder (the original's last model) has no heads: mean and log_var are
    None and conv gives the latent z itself.
    """

    conv: LayerList
    mean: LayerList | None
    log_var: LayerList | None


@dataclass(frozen=True)
class ArchitectureConfig:
    """model.architecture: the encoder's three layer lists and the decoder's, which the study inverts."""

    encoder: EncoderConfig
    decoder: LayerList

    @property
    def variational(self) -> bool:
        """A VAE (encoder heads mean and log_var), or a deterministic autoencoder (neither)."""
        return self.encoder.mean is not None

    def parts(self) -> dict[str, LayerList]:
        """Every layer list by its key under model.architecture, in the order the model builds them."""
        e = self.encoder
        parts = {"encoder.conv": e.conv, "encoder.mean": e.mean, "encoder.log_var": e.log_var, "decoder": self.decoder}
        return {key: specs for key, specs in parts.items() if specs is not None}


@dataclass(frozen=True)
class ModelConfig:
    """model: only the architecture, as in the original config."""

    architecture: ArchitectureConfig


@dataclass(frozen=True)
class TestConfig:
    __test__ = False  # a config section, not a pytest test class

    batch_size: int
    n_components: int
    model_path: str
    results_path: str
    allow_intermediate: bool  # accept a test.model_path checkpoint from before train.train_epochs


@dataclass(frozen=True)
class DataConfig:
    """data: where MNIST lives (relative to the project), subsets for quick runs, the validation share."""

    root: str
    train_subset: int | None
    test_subset: int | None
    val_fraction: float


@dataclass(frozen=True)
class EvaluateConfig:
    """evaluate (notebook 02): t-SNE sample size (None: the whole test set) and the probe's iterations."""

    tsne_samples: int | None
    probe_max_iter: int


@dataclass(frozen=True)
class InvertConfig:
    """invert (notebook 03): the size of the run's prior sample, and the image grids' width."""

    n_prior: int
    examples_per_digit: int


@dataclass(frozen=True)
class MethodsConfig:
    """methods (notebook 05): which methods, on how many images, under which noise; per-method overrides."""

    names: tuple[str, ...] | None
    real_subset: int | None
    realizable_n: int
    slow_n: int | None
    noise_levels: tuple[float, ...]
    noise_draws: int
    noise_names: tuple[str, ...] | None
    overrides: Mapping[str, Mapping[str, Any]] | None


@dataclass(frozen=True)
class FailureConfig:
    squeezed_params: str | None
    delta: float
    fixes_subset: int | None


@dataclass(frozen=True)
class Config:
    """A validated params file. Derive a changed one with `replace`, never by mutation."""

    device: str
    hypothesis: str | None
    seed: int
    train: TrainConfig
    model: ModelConfig
    test: TestConfig
    data: DataConfig
    evaluate: EvaluateConfig
    invert: InvertConfig
    methods: MethodsConfig
    failure: FailureConfig
    source: str | None = None  # the params file it was read from, if any

    def to_dict(self) -> dict:
        """Plain nested dicts and lists in the params file's own schema (no `source`)."""
        return _plain_section(self)

    def replace(self, **updates) -> Config:
        """A copy with some keys changed, validated again like a file.

        Sections merge key by key (`replace(train={"train_epochs": 4})` keeps the rest of train);
        a value that is not a section, such as `others` or a layer list, is replaced whole.
        """
        merged = _merge(self.to_dict(), updates, SCHEMA)
        return validate_config(merged, source=self.source)


def _plain_section(section) -> dict:
    out = {}
    for f in dataclasses.fields(section):
        if f.name == "source":
            continue
        value = getattr(section, f.name)
        out[f.name] = _plain_section(value) if dataclasses.is_dataclass(value) else thaw(value)
    return out


def _merge(base: dict, updates: Mapping, schema: dict) -> dict:
    """`base` with `updates` laid over it, recursing only into the schema's sections."""
    out = dict(base)
    for key, value in updates.items():
        spec = schema.get(key)
        if isinstance(spec, dict) and isinstance(value, Mapping) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value, spec)
        else:
            out[key] = thaw(value)
    return out


# --- layer lists ---------------------------------------------------------------------------

def parse_layers(blocks: list, where: str = "layers") -> LayerList:
    """A layer list of the params file -> LayerSpecs. Checks the form only; names are core.layers'."""
    return tuple(_parse_layer(block, f"{where}[{i}]") for i, block in enumerate(blocks))


def _parse_layer(block, where: str) -> LayerSpec:
    """A block is a one-key mapping {Name: None | {args: [...], other kwargs}}."""
    if not isinstance(block, dict) or len(block) != 1 or not isinstance(next(iter(block)), str):
        raise ParamsError(f"{where}: a layer must be a one-key mapping like {{Linear: {{args: [784, 512]}}}}, "
                          f"got {_short(block)}")
    name, options = next(iter(block.items()))
    where = f"{where}.{_cut(name)}"
    if options is not None and not isinstance(options, dict):
        raise ParamsError(f"{where}: options must be a mapping (args: [...], bias: ...), got {_short(options)}")
    options = dict(options or {})
    args = options.pop("args", [])
    if not isinstance(args, list):
        raise ParamsError(f"{where}.args: must be a list, got {_short(args)}")
    _check_sizes(name, args, options, where)
    return LayerSpec(name, freeze(args), freeze(options))


def _check_sizes(name: str, args: list, options: dict, where: str) -> None:
    """Bound a layer's size arguments (positional or keyword) before anything is built from them."""
    names = SIZE_ARGUMENTS.get(name, ())
    given = [(f"args[{i}] ({key})", key, value) for i, (key, value) in enumerate(zip(names, args))]
    given += [(key, key, options[key]) for key in names if key in options]
    for label, _, value in given:
        for size in value if isinstance(value, list) else [value]:  # LayerNorm's shape may be a list
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_FEATURES:
                raise ParamsError(f"{where}.{label}: must be an integer from 1 to {MAX_FEATURES:,}, got {_short(size)}")
    sizes = {key: value for _, key, value in given}
    if name == "Linear" and len(sizes) == 2 and sizes["in_features"] * sizes["out_features"] > MAX_LAYER_WEIGHTS:
        raise ParamsError(f"{where}: {sizes['in_features']} x {sizes['out_features']} weights; "
                          f"a layer may have at most {MAX_LAYER_WEIGHTS:,}")
    if name == "Linear" and len(args) > 2 and (len(args) > 3 or not isinstance(args[2], bool)):
        # nn.Linear's third positional argument is bias: strict like the keyword (a quoted 'no' is true).
        raise ParamsError(f"{where}.args: must be [in, out] or [in, out, bias] with bias true or false, "
                          f"got {_short(args)}")


# --- from validated dicts to the tree ------------------------------------------------------

def _build(cls, node: dict, where: str):
    """Instantiate the dataclass `cls` from a validated section, following its field types."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in node:
            continue
        name = f"{where}.{f.name}" if where else f.name
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, node[f.name], name)
        elif kind in (LayerList, LayerList | None):
            values[f.name] = None if node[f.name] is None else parse_layers(node[f.name], name)
        else:
            values[f.name] = freeze(node[f.name])
    return cls(**values)


def validate_config(raw: Any, source: str | None = None) -> Config:
    """Validate a parsed params mapping (defaults filled in) into a Config."""
    _check_values(raw, "")
    params = _normalize(_validate(raw, SCHEMA, ""))
    _check_scheduler_options(params["train"]["lr_scheduler"])
    _check_preactivation_penalty(params["train"]["preactivation_penalty"])
    _check_model_kind(params["train"]["loss"], params["model"]["architecture"]["encoder"])
    return _build(Config, {**params, "source": source}, "")


def _check_values(node: Any, where: str) -> None:
    """Anywhere in the file, `others` and layer options included: numbers finite, flags real booleans."""
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{where}.{key}" if where else str(key)
            if (key in FLAGS and not isinstance(value, bool)) or \
                    (key in OPTIONAL_FLAGS and not isinstance(value, (bool, type(None)))):
                raise ParamsError(f"{_cut(name)}: must be true or false, got {type(value).__name__} {_short(value)}")
            _check_values(value, name)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_values(value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        # YAML's .nan and .inf are floats, and slip past every range check (nan > 0 is merely false).
        raise ParamsError(f"{_cut(where)}: must be a finite number, got {node}")


def _check_model_kind(loss: list[str], encoder: dict) -> None:
    """train.loss and the encoder must describe the same model: a VAE (two loss names, heads mean and
    log_var) or a deterministic autoencoder (one loss name, no heads: encoder.conv gives z)."""
    where = "model.architecture.encoder"
    heads = [key for key in ("mean", "log_var") if encoder[key] is not None]
    if len(loss) == 1 and heads:
        raise ParamsError(f"{where}.{heads[0]}: train.loss names one loss ({loss[0]}), a deterministic autoencoder "
                          f"without mean or log_var heads; remove encoder.{' and encoder.'.join(heads)}, or add "
                          f"regularizationloss to train.loss for a VAE")
    if len(loss) == 2 and len(heads) < 2:
        missing = next(key for key in ("mean", "log_var") if key not in heads)
        raise ParamsError(f"{where}.{missing}: missing key (train.loss [{', '.join(loss)}] trains a VAE, which needs "
                          f"encoder.mean and encoder.log_var; a deterministic autoencoder lists one loss)")


def _check_scheduler_options(scheduler: dict) -> None:
    limits = SCHEDULER_OPTIONS.get(scheduler["name"], {})
    for key, value in (scheduler["others"] or {}).items():
        problem = limits[key](value) if key in limits else None
        if problem:
            raise ParamsError(f"train.lr_scheduler.others.{key}: {problem}")


def _check_preactivation_penalty(penalty: dict | None) -> None:
    """Both keys, each a positive number; one line naming the key otherwise."""
    if penalty is None:
        return
    where = "train.preactivation_penalty"
    for key in penalty:
        if key not in PENALTY_OPTIONS:
            raise ParamsError(f"{where}.{_cut(str(key))}: unknown key{_closest(str(key), PENALTY_OPTIONS)}")
    for key, check in PENALTY_OPTIONS.items():
        if key not in penalty:
            raise ParamsError(f"{where}.{key}: missing key (the penalty needs both bound and weight)")
        problem = check(penalty[key])
        if problem:
            raise ParamsError(f"{where}.{key}: {problem}")


class _ParamsLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing what no params file needs and a hostile one could abuse.

    Duplicate keys (YAML silently keeps the last one), anchors and aliases (an alias bomb expands
    exponentially in memory) and nesting deeper than MAX_DEPTH (the composer recurses, so 100,000
    nested lists end in a RecursionError) each become one YAMLError with the line.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not allowed "
                                              "in a params file", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader's own construct_mapping refuses it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_short(key)} (YAML would "
                                                        "silently keep the last one)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        return yaml.load(path.read_text(), Loader=_ParamsLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ParamsError(f"{path}: invalid YAML{at}: {problem}") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a params YAML file. Raises ParamsError with one line starting with the path.

    The schema only: runs.checks.load_checked_config adds the checks that need the model code.
    """
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return validate_config(raw, source=str(path))
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def run_name(params_path: str | Path) -> str:
    """The run's folder name under reports/: the params file's stem (default.yaml -> default)."""
    return Path(params_path).stem
