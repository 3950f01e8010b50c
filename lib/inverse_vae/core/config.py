"""A params file, validated once into a frozen, typed Config (a leaf: no torch, no model code).

The schema is pydantic's, by its own options: every section frozen, strict and closed (ConfigDict(frozen=True,
strict=True, extra="forbid")), bounds as Field constraints, model_dump(mode="json") for the file's schema back. Checked
here by hand is what no type says: a layer list, the flags and finite numbers inside free-form keyword mappings, a
scheduler's keywords, and the YAML (duplicate keys, anchors). A file may name a `base` params file beside it and give
only what it changes. Every refusal is one line naming the key; runs.run.load_checked_config judges the network, the trainer
and the methods.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ..constants import OPTIMIZERS, SCHEDULERS
from ..errors import ParamsError

_MAX_QUOTED = 60  # a refusal quotes at most this many characters of the bad value
_MAX_FEATURES = 65_536  # layer sizes: a typo such as [512, 100000000000] is refused before torch allocates it
_MAX_LAYER_WEIGHTS = 1 << 26  # 256 MiB of float32 per Linear
_MAX_BASES = 4  # base chains: default <- variant <- variant of a variant ...
_SIZE_ARGUMENTS = {"Linear": ("in_features", "out_features"), "BatchNorm1d": ("num_features",),
                   "LayerNorm": ("normalized_shape",)}
# Flags must be real booleans: a quoted 'no' is a non-empty string, which torch takes as true.
_FLAGS = frozenset({"bias", "inplace", "affine", "track_running_stats", "elementwise_affine", "amsgrad",
                    "nesterov", "maximize", "capturable", "differentiable", "cycle_momentum", "three_phase"})
# Layer options the study decides itself: where and in which arithmetic a layer computes.
_STUDY_OWNED = frozenset({"device", "dtype"})


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."


def _freeze(value: Any, where: str) -> Any:
    """Tuples and read-only mappings all the way down (frozen=True for free-form keyword mappings: pydantic has no
    frozen dict), refusing flags that are no real booleans and numbers that are not finite (YAML's .nan and .inf slip
    past every range check, and torch takes them)."""
    if isinstance(value, Mapping):
        frozen = {}
        for key, item in value.items():
            if key in _FLAGS and not isinstance(item, bool):
                raise ValueError(f"{where}.{_cut(str(key))}: must be true or false, got {_cut(item)}")
            frozen[key] = _freeze(item, f"{where}.{_cut(str(key))}")
        return MappingProxyType(frozen)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: must be a finite number, got {value}")
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again: for JSON and YAML, and for torch, whose optimizer state (saved in a checkpoint)
    keeps the lists it was given."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return [thaw(v) for v in value] if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a layer list, `{Linear: {args: [784, 512], bias: False}}`; built by core.model."""

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict:
        options = {"args": thaw(self.args)} if self.args else {}
        return {self.name: {**options, **thaw(self.kwargs)} or None}


def _size_problem(name: str, args: list, options: dict) -> str | None:
    names = _SIZE_ARGUMENTS.get(name, ())
    given = dict(zip(names, args)) | {k: options[k] for k in names if k in options}
    for key, value in given.items():
        for size in value if isinstance(value, list) else [value]:
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_FEATURES:
                return f".{key}: must be an integer from 1 to {_MAX_FEATURES:,}, got {_cut(size)}"
    if name == "Linear" and len(given) == 2 and given["in_features"] * given["out_features"] > _MAX_LAYER_WEIGHTS:
        return f": {given['in_features']} x {given['out_features']} weights; a layer may have at most {_MAX_LAYER_WEIGHTS:,}"
    if name == "Linear" and len(args) > 2 and (len(args) > 3 or not isinstance(args[2], bool)):
        return f".args: must be [in, out] or [in, out, bias] with bias true or false, got {_cut(args)}"
    return None


def _layer(block: Any) -> LayerSpec:
    if not isinstance(block, dict) or len(block) != 1 or not isinstance(next(iter(block)), str):
        raise ValueError(f"a layer must be a one-key mapping like {{Linear: {{args: [784, 512]}}}}, got {_cut(block)}")
    name, options = next(iter(block.items()))
    if options is not None and not isinstance(options, dict):
        raise ValueError(f".{name}: options must be a mapping (args: [...], bias: ...), got {_cut(options)}")
    options = dict(options or {})
    args = options.pop("args", [])
    if not isinstance(args, list):
        raise ValueError(f".{name}.args: must be a list, got {_cut(args)}")
    if _STUDY_OWNED & set(options):
        raise ValueError(f".{name}.{min(_STUDY_OWNED & set(options))}: not a layer option here (the run's `device` and "
                         f"the study decide where and in which arithmetic layers compute)")
    kwargs = _freeze(options, f".{name}")
    problem = _size_problem(name, args, options)
    if problem:
        raise ValueError(f".{name}{problem}")
    return LayerSpec(name, _freeze(args, f".{name}.args"), kwargs)


def _losses(value: Any) -> tuple[str, ...]:
    """[reconstruction] (a deterministic autoencoder) or [reconstruction, regularizationloss] (a VAE)."""
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2) or not all(isinstance(n, str) for n in value):
        raise ValueError(f"must be [reconstruction] (an autoencoder) or [reconstruction, regularizationloss] (a VAE), "
                         f"got {_cut(value)}")
    if value[0].lower() not in ("bceloss", "mseloss"):
        raise ValueError(f"unknown reconstruction loss {value[0]!r}; allowed: bceloss, mseloss")
    if value[1:] and value[1].lower() != "regularizationloss":
        raise ValueError(f"unknown regularization loss {value[1]!r}; allowed: regularizationloss")
    return tuple(n.lower() for n in value)


def _options(value: Any) -> Any:
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of keyword arguments, got {_cut(value)}")
    return None if value is None else _freeze(value, "")


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_LIST = Field(strict=False)  # a YAML list, read as a tuple (strict takes tuples only); its items stay strict
_Layer = Annotated[LayerSpec, PlainValidator(_layer), PlainSerializer(LayerSpec.to_dict)]
_Layers = Annotated[tuple[_Layer, ...], Field(min_length=1), _LIST]
_Options = Annotated[Any, BeforeValidator(_options), PlainSerializer(thaw)]  # keyword arguments of a torch class
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=1)]
_Text = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """What extra="forbid" refuses, said with the key meant (pydantic's error names only the unknown one)."""
        if not isinstance(data, dict | BaseModel):
            raise ValueError(f"must be a mapping of keys, got {_cut(data)}")
        unknown = [key for key in data if key not in cls.model_fields] if isinstance(data, dict) else []
        if unknown:
            match = difflib.get_close_matches(str(unknown[0]), cls.model_fields, n=1)
            raise ValueError(f".{_cut(str(unknown[0]))}: unknown key" + (f" (did you mean {match[0]!r}?)" if match else ""))
        return data


class Optim(_Section):
    name: Annotated[Literal[tuple(OPTIMIZERS)], BeforeValidator(_lower)]
    learning_rate: _Positive
    others: _Options = None


# Scheduler keywords torch accepts but then fails on (step_size 0) or obeys silently (a negative one).
_SCHEDULER_LIMITS = {key: TypeAdapter(kind) for key, kind in {
    "step_size": _Count, "step_size_up": _Count, "step_size_down": _Count | None, "T_max": _Count, "gamma": _Positive,
    "eta_min": _NonNegative, "milestones": tuple[_Count, ...]}.items()}


class Scheduler(_Section):
    name: Annotated[Literal[tuple(SCHEDULERS)], BeforeValidator(_lower)]
    others: _Options = None

    @model_validator(mode="after")
    def _limits(self):
        for key in [key for key in self.others or {} if key in _SCHEDULER_LIMITS]:
            try:
                _SCHEDULER_LIMITS[key].validate_python(self.others[key], strict=True)
            except ValidationError as exc:
                raise ValueError(f".others.{key}: {_message(exc.errors()[0])}") from None
        return self


class _Penalty(_Section):
    bound: _Positive
    weight: _Positive  # null, not 0, says "no penalty"


class Train(_Section):
    batch_size: _Count
    train_epochs: _Count
    # [reconstruction, regularization] for a VAE, [reconstruction] alone for a deterministic autoencoder.
    loss: Annotated[tuple[str, ...], BeforeValidator(_losses)]
    optim: Optim
    lr_scheduler: Scheduler
    alpha: _NonNegative
    model_path: _Text
    progress_path: _Text
    plot_epochs: _Count
    # train towards lo + (hi - lo) x (squeezed targets)
    target_range: Annotated[tuple[_NonNegative, _Positive], _LIST] | None = None
    # weight * mean(relu(side - bound)^2) over the decoder's amplifying inputs (table: amplifying_side)
    preactivation_penalty: _Penalty | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.target_range is not None and not 0 <= self.target_range[0] < self.target_range[1] <= 1:
            raise ValueError(f".target_range: must be [lo, hi] with 0 <= lo < hi <= 1, got {list(self.target_range)}")
        return self

    @property
    def reconstruction_loss(self) -> str:
        return self.loss[0]

    @property
    def variational(self) -> bool:
        return len(self.loss) == 2


class _Encoder(_Section):
    conv: _Layers
    mean: _Layers | None = None  # a VAE's heads; an autoencoder has neither and conv gives z
    log_var: _Layers | None = None


class Architecture(_Section):
    encoder: _Encoder
    decoder: _Layers

    @property
    def variational(self) -> bool:
        return self.encoder.mean is not None

    def parts(self) -> dict[str, tuple[LayerSpec, ...]]:
        e = self.encoder
        parts = {"encoder.conv": e.conv, "encoder.mean": e.mean, "encoder.log_var": e.log_var, "decoder": self.decoder}
        return {key: specs for key, specs in parts.items() if specs is not None}


class _DecoderConstraint(_Section):
    """Decoder weights built as Q diag(d) V^T with cond < cond_max (core.model.BoundedSemiOrthogonal)."""

    cond_max: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 16.0
    rotate: bool = True  # free right singular vectors V (without: W = Q diag(d))


class _ModelSection(_Section):
    architecture: Architecture
    decoder_constraint: _DecoderConstraint | None = None  # null: plain weights, as the original


class _Test(_Section):
    batch_size: _Count
    n_components: _Count
    model_path: _Text
    results_path: _Text
    allow_intermediate: bool = False  # evaluate a checkpoint from before train_epochs


class _Data(_Section):
    root: _Text = "data"  # relative to the project root
    train_subset: _Count | None = None  # first N of the 60k training images
    test_subset: _Count | None = None
    val_fraction: Annotated[float, Field(ge=0.01, le=0.5)] = 0.1


class _Evaluate(_Section):
    tsne_samples: Annotated[int, Field(ge=10)] | None = None  # None: the whole test set
    probe_max_iter: Annotated[int, Field(ge=10, le=100_000)] = 1000
    iwae_k: Annotated[int, Field(ge=1, le=100_000)] = 1000  # importance samples of -log p(x)


class _Invert(_Section):
    n_prior: Annotated[int, Field(ge=1, le=1_000_000)] = 10000
    examples_per_digit: Annotated[int, Field(ge=1, le=100)] = 3


class _Methods(_Section):
    names: Annotated[tuple[_Text, ...], _LIST] | None = None  # None: every method of inversion.methods.METHODS
    real_subset: _Count | None = None
    realizable_n: Annotated[int, Field(ge=1, le=100_000)] = 1000
    slow_n: _Count | None = None  # the slow gradient-descent methods on fewer samples
    noise_levels: Annotated[tuple[_Positive, ...], _LIST] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    noise_draws: Annotated[int, Field(ge=1, le=100_000)] = 200
    noise_names: Annotated[tuple[_Text, ...], _LIST] | None = None
    overrides: _Options = None  # {method: {option: value}}, checked against the method (runs.run)


class _Failure(_Section):
    squeezed_params: _Text | None = "params/squeezed.yaml"  # the squeezed-targets run 04 compares
    delta: Annotated[float, Field(gt=0, le=0.5)] = 1e-3
    fixes_subset: _Count | None = None


class Config(_Section):
    """A validated params file. Derive a changed one with `replace`, never by mutation."""

    device: Annotated[Literal["cuda", "mps", "cpu", "auto"], BeforeValidator(_lower)]
    hypothesis: _Text | None = None  # what the run is expected to show, stated before its results
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0  # numpy and scikit-learn take seeds below 2^32
    train: Train
    model: _ModelSection
    test: _Test
    data: _Data = _Data()
    evaluate: _Evaluate = _Evaluate()
    invert: _Invert = _Invert()
    methods: _Methods = _Methods()
    failure: _Failure = _Failure()
    source: str | None = Field(default=None, exclude=True)  # the params file it was read from

    @model_validator(mode="after")
    def _model_kind(self):
        heads = [k for k in ("mean", "log_var") if getattr(self.model.architecture.encoder, k) is not None]
        if self.train.variational and len(heads) < 2:
            missing = next(k for k in ("mean", "log_var") if k not in heads)
            raise ValueError(f".model.architecture.encoder.{missing}: missing key (train.loss names two losses, a VAE, "
                             f"which needs encoder.mean and encoder.log_var)")
        if not self.train.variational and heads:
            raise ValueError(f".model.architecture.encoder.{heads[0]}: train.loss names one loss, a deterministic "
                             f"autoencoder without mean or log_var heads; remove them, or add regularizationloss")
        return self

    def to_dict(self) -> dict:
        """Plain nested dicts and lists in the params file's own schema (no `source`)."""
        return self.model_dump(mode="json")

    def replace(self, **updates) -> Config:
        """A copy with some keys changed (sections merged key by key), validated again like a file."""
        return _validate_config(_merge(self.to_dict(), updates), source=self.source)


def _message(error: dict) -> str:
    """pydantic's words for one error, ending with the bad value quoted short; our validators' words as they are."""
    if error["type"] == "missing":
        return "missing key"
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    return f"{error['msg']}, got {_cut(repr(given) if isinstance(given, str) else given)}"


def _validate_config(raw: Any, source: str | None = None) -> Config:
    """Validate a parsed params mapping (defaults filled in) into a Config; ParamsError naming the key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: must be a mapping, got {_cut(raw)}")
    try:
        return Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        error = exc.errors()[0]  # as `key: what is wrong`; our validators' words starting with '.' or '[' name keys below
        where, text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]), _message(error)
        raise ParamsError((where + text if text[:1] in "[." else f"{where}: {text}").lstrip(".")) from None


def _merge(base: dict, updates: Mapping) -> dict:
    """`base` with `updates` laid over it: mappings merge key by key, anything else is replaced whole."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key not in ("others", "overrides"):
            out[key] = _merge(base[key], value)
        else:
            out[key] = thaw(value)
    return out


class _ParamsLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing duplicate keys (YAML keeps the last silently) and anchors and aliases (an alias bomb
    expands exponentially)."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_cut(key)}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    """The file's YAML, plain data only, refused in one line when it is no text file of valid YAML."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_ParamsLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None
    except RecursionError:  # PyYAML's composer recurses per level; no params file nests hundreds deep
        raise ParamsError(f"{path}: invalid YAML: nested too deeply") from None


def _read_params(path: Path, depth: int = 0) -> dict:
    """The file's mapping, merged onto its `base` (a params file beside it) when it names one."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: params: must be a mapping, got {_cut(raw)}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.endswith(".yaml") or "/" in base or base.startswith("."):
        raise ParamsError(f"{path}: base: must name a params file beside it, like default.yaml, got {_cut(base)}")
    if depth >= _MAX_BASES:
        raise ParamsError(f"{path}: base: more than {_MAX_BASES} bases in a chain (a loop?)")
    if (path.parent / base).resolve().parent != path.parent.resolve():  # a link beside it to a file elsewhere: not read
        raise ParamsError(f"{path}: base: {base} is a link to a file outside {path.parent}; a base must be a params "
                          f"file beside it (copy it there)")
    return _merge(_read_params(path.parent / base, depth + 1), raw)


def load_config(path: str | Path) -> Config:
    """Read, merge onto its base and validate a params file; ParamsError, one line starting with the path."""
    path = Path(path)
    raw = _read_params(path)
    try:
        return _validate_config(raw, source=str(path))
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def family(params_dir: str | Path) -> list[Path]:
    """The family of runs: every params file of params/ but the tests' smoke run."""
    return sorted(p for p in Path(params_dir).glob("*.yaml") if p.stem != "smoke")


def run_name(params_path: str | Path) -> str:
    """The run's folder name under reports/: the params file's stem (default.yaml -> default)."""
    return Path(params_path).stem
