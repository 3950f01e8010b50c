"""A params file, validated once into a frozen, typed Config (a leaf: no torch, no model code).

The schema: the original config.yaml's keys (required) and this study's sections (optional, with defaults). pydantic
types, bounds and freezes it and refuses unknown keys (strict types, Field bounds, frozen, extra="forbid"); what is
checked here by hand is what no type says: a layer list, the flags and finite numbers inside keyword mappings, a
scheduler's keywords. A file may name a `base` params file and give only what it changes (merged before validation).
Every refusal is one line naming the key; what only the network, the trainer or the methods can judge is
runs.run.check_config's.
"""
from __future__ import annotations

import difflib
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ..constants import OPTIMIZERS, SCHEDULERS
from ..errors import ParamsError

MAX_QUOTED = 60  # a refusal quotes at most this many characters of the bad value
_MAX_FEATURES = 65_536  # layer sizes: a typo such as [512, 100000000000] is refused before torch allocates it
_MAX_LAYER_WEIGHTS = 1 << 26  # 256 MiB of float32 per Linear
_MAX_DEPTH = 32  # YAML nesting (the composer recurses: deeper is a RecursionError)
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
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def _freeze(value: Any) -> Any:
    """Lists to tuples and mappings to read-only views, all the way down: what pydantic's frozen=True does for a
    section, for the free-form keyword mappings inside one (`others`, layer options)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (for JSON, YAML or a torch constructor)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a layer list, `{Linear: {args: [784, 512], bias: False}}`; built by core.model."""

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))

    def to_dict(self) -> dict:
        options = {"args": thaw(self.args)} if self.args else {}
        options.update(thaw(self.kwargs))
        return {self.name: options or None}


def _check_flags(node: Any, where: str) -> None:
    """Flags real booleans and numbers finite, all the way down (`others`, layer options): YAML's .nan and .inf
    slip past every range check, and torch takes them."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _FLAGS and not isinstance(value, bool):
                raise ValueError(f"{where}{_cut(str(key))}: must be true or false, got {_cut(value)}")
            _check_flags(value, f"{where}{_cut(str(key))}.")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _check_flags(value, f"{where.rstrip('.')}[{i}].")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ValueError(f"{where.rstrip('.')}: must be a finite number, got {node}")


def _size_problem(name: str, args: list, options: dict) -> str | None:
    names = _SIZE_ARGUMENTS.get(name, ())
    given = dict(zip(names, args)) | {k: options[k] for k in names if k in options}
    for key, value in given.items():
        for size in value if isinstance(value, list) else [value]:
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_FEATURES:
                return f"{key}: must be an integer from 1 to {_MAX_FEATURES:,}, got {_cut(size)}"
    if name == "Linear" and len(given) == 2 and given["in_features"] * given["out_features"] > _MAX_LAYER_WEIGHTS:
        return f": {given['in_features']} x {given['out_features']} weights; a layer may have at most {_MAX_LAYER_WEIGHTS:,}"
    if name == "Linear" and len(args) > 2 and (len(args) > 3 or not isinstance(args[2], bool)):
        return f"args: must be [in, out] or [in, out, bias] with bias true or false, got {_cut(args)}"
    return None


def _layer(block: Any, i: int) -> LayerSpec:
    if not isinstance(block, dict) or len(block) != 1 or not isinstance(next(iter(block)), str):
        raise ValueError(f"[{i}]: a layer must be a one-key mapping like {{Linear: {{args: [784, 512]}}}}, got {_cut(block)}")
    name, options = next(iter(block.items()))
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"[{i}].{name}: options must be a mapping (args: [...], bias: ...), got {_cut(options)}")
    options = dict(options or {})
    args = options.pop("args", [])
    if not isinstance(args, list):
        raise ValueError(f"[{i}].{name}.args: must be a list, got {_cut(args)}")
    owned = _STUDY_OWNED & set(options)
    if owned:
        raise ValueError(f"[{i}].{name}.{min(owned)}: not a layer option here (the run's `device` and the study "
                         f"decide where and in which arithmetic layers compute)")
    _check_flags(options, f"[{i}].{name}.")
    problem = _size_problem(name, args, options)
    if problem:
        raise ValueError(f"[{i}].{name}{problem if problem.startswith(':') else '.' + problem}")
    return LayerSpec(name, _freeze(args), _freeze(options))


def _layers(value: Any) -> tuple[LayerSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of layers, got {_cut(value)}")
    return tuple(_layer(block, i) for i, block in enumerate(value))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _losses(value: Any) -> tuple[str, ...]:
    """[reconstruction] (a deterministic autoencoder) or [reconstruction, regularizationloss] (a VAE)."""
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2) or not all(isinstance(n, str) for n in value):
        raise ValueError(f"must be [reconstruction] (an autoencoder) or [reconstruction, regularizationloss] (a VAE), "
                         f"got {_cut(value)}")
    names = tuple(n.lower() for n in value)
    if names[0] not in ("bceloss", "mseloss"):
        raise ValueError(f"unknown reconstruction loss {value[0]!r}; allowed: bceloss, mseloss")
    if names[1:] not in ((), ("regularizationloss",)):
        raise ValueError(f"unknown regularization loss {value[1]!r}; allowed: regularizationloss")
    return names


def _frozen_mapping(value: Any) -> Any:
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of keyword arguments, got {_cut(value)}")
    _check_flags(value or {}, ".")
    return None if value is None else _freeze(value)


Layers = Annotated[tuple[LayerSpec, ...], BeforeValidator(_layers), PlainSerializer(lambda specs: [s.to_dict() for s in specs])]
Options = Annotated[Any, BeforeValidator(_frozen_mapping), PlainSerializer(thaw)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Count = Annotated[StrictInt, Field(ge=1)]
Text = Annotated[StrictStr, Field(min_length=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Optim(Section):
    name: Annotated[Literal[tuple(OPTIMIZERS)], BeforeValidator(_lower)]
    learning_rate: Positive
    others: Options = None  # keyword arguments of the torch optimizer


# Scheduler keywords torch accepts but then fails on (step_size 0) or obeys silently (a negative one).
_SCHEDULER_LIMITS = {key: TypeAdapter(kind) for key, kind in {
    "step_size": Count, "step_size_up": Count, "step_size_down": Count | None, "T_max": Count, "gamma": Positive,
    "eta_min": NonNegative, "milestones": tuple[Count, ...]}.items()}


class Scheduler(Section):
    name: Annotated[Literal[tuple(SCHEDULERS)], BeforeValidator(_lower)]
    others: Options = None

    @model_validator(mode="after")
    def _limits(self):
        for key, value in (self.others or {}).items():
            if key in _SCHEDULER_LIMITS:
                try:
                    _SCHEDULER_LIMITS[key].validate_python(thaw(value))
                except ValidationError as exc:
                    raise ValueError(f".others.{key}: {_message(exc.errors()[0])}") from None
        return self


class Penalty(Section):
    bound: Positive
    weight: Positive  # null, not 0, says "no penalty"


class Train(Section):
    batch_size: Count
    train_epochs: Count
    # [reconstruction, regularization] for a VAE, [reconstruction] alone for a deterministic autoencoder.
    loss: Annotated[tuple[str, ...], BeforeValidator(_losses)]
    optim: Optim
    lr_scheduler: Scheduler
    alpha: NonNegative
    model_path: Text
    progress_path: Text
    plot_epochs: Count
    target_range: tuple[NonNegative, Positive] | None = None  # train towards lo + (hi - lo) x (squeezed targets)
    # weight * mean(relu(side - bound)^2) over the decoder's amplifying inputs (table: amplifying_side)
    preactivation_penalty: Penalty | None = None

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


class Encoder(Section):
    conv: Layers
    mean: Layers | None = None  # a VAE's heads; an autoencoder has neither and conv gives z
    log_var: Layers | None = None


class Architecture(Section):
    encoder: Encoder
    decoder: Layers

    @property
    def variational(self) -> bool:
        return self.encoder.mean is not None

    def parts(self) -> dict[str, tuple[LayerSpec, ...]]:
        e = self.encoder
        parts = {"encoder.conv": e.conv, "encoder.mean": e.mean, "encoder.log_var": e.log_var, "decoder": self.decoder}
        return {key: specs for key, specs in parts.items() if specs is not None}


class DecoderConstraint(Section):
    """Decoder weights built as Q diag(d) V^T with cond < cond_max (core.model.BoundedSemiOrthogonal)."""

    cond_max: Annotated[float, Field(ge=1, allow_inf_nan=False, strict=True)] = 16.0
    rotate: StrictBool = True  # free right singular vectors V (without: W = Q diag(d))


class ModelSection(Section):
    architecture: Architecture
    decoder_constraint: DecoderConstraint | None = None  # null: plain weights, as the original


class Test(Section):
    __test__ = False  # a config section, not a pytest class
    batch_size: Count
    n_components: Count
    model_path: Text
    results_path: Text
    allow_intermediate: StrictBool = False  # evaluate a checkpoint from before train_epochs


class Data(Section):
    root: Text = "data"  # relative to the project root
    train_subset: Count | None = None  # first N of the 60k training images
    test_subset: Count | None = None
    val_fraction: Annotated[float, Field(ge=0.01, le=0.5, strict=True)] = 0.1


class Evaluate(Section):
    tsne_samples: Annotated[StrictInt, Field(ge=10)] | None = None  # None: the whole test set
    probe_max_iter: Annotated[StrictInt, Field(ge=10, le=100_000)] = 1000
    iwae_k: Annotated[StrictInt, Field(ge=1, le=100_000)] = 1000  # importance samples of -log p(x)


class Invert(Section):
    n_prior: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 10000
    examples_per_digit: Annotated[StrictInt, Field(ge=1, le=100)] = 3


class Methods(Section):
    names: tuple[Text, ...] | None = None  # None: every method of inversion.methods.METHODS
    real_subset: Count | None = None
    realizable_n: Annotated[StrictInt, Field(ge=1, le=100_000)] = 1000
    slow_n: Count | None = None  # the slow gradient-descent methods on fewer samples
    noise_levels: tuple[Positive, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    noise_draws: Annotated[StrictInt, Field(ge=1, le=100_000)] = 200
    noise_names: tuple[Text, ...] | None = None
    overrides: Options = None  # {method: {option: value}}, checked against the method (runs.run)


class Failure(Section):
    squeezed_params: Text | None = "params/squeezed.yaml"  # the squeezed-targets run 04 compares
    delta: Annotated[float, Field(gt=0, le=0.5, strict=True)] = 1e-3
    fixes_subset: Count | None = None


class Config(Section):
    """A validated params file. Derive a changed one with `replace`, never by mutation."""

    device: Annotated[Literal["cuda", "mps", "cpu", "auto"], BeforeValidator(_lower)]
    hypothesis: Text | None = None  # what the run is expected to show, stated before its results
    seed: Annotated[StrictInt, Field(ge=0, lt=2**32)] = 0  # numpy and scikit-learn take seeds below 2^32
    train: Train
    model: ModelSection
    test: Test
    data: Data = Data()
    evaluate: Evaluate = Evaluate()
    invert: Invert = Invert()
    methods: Methods = Methods()
    failure: Failure = Failure()
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
        return validate_config(_merge(self.to_dict(), updates), source=self.source)


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "tuple[", "nullable", "literal", "json-or")):
            out += f".{_cut(str(part))}" if out else _cut(str(part))
    return out


def _fields_at(loc: tuple) -> list[str]:
    """The keys allowed where an unknown key was found (for 'did you mean')."""
    model: Any = Config
    for part in loc[:-1]:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        kind = getattr(info, "annotation", None)
        candidates = [t for t in (kind, *getattr(kind, "__args__", ())) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)


def _message(error: dict) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "missing":
        return "missing key"
    if kind == "extra_forbidden":
        match = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
        return "unknown key" + (f" (did you mean {match[0]!r}?)" if match else "")
    text = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    return text if kind == "value_error" else f"{text}, got {_cut(repr(given) if isinstance(given, str) else given)}"


def _one_line(exc: ValidationError) -> str:
    """The first error as `key: what is wrong`; a validator's own message may name keys below its field
    (it starts with '.' or '[')."""
    errors = [e for e in exc.errors() if e["type"] != "none_required"] or exc.errors()  # `X | None`: X's error
    error = min(errors, key=lambda e: e["type"] != "extra_forbidden")  # a misspelled key: named, with a suggestion
    where, text = _location(error["loc"]), _message(error)
    if error["type"] == "value_error" and text[:1] in "[.":
        return where + text if where else text.lstrip(".")
    return f"{where}: {text}" if where else text


def validate_config(raw: Any, source: str | None = None) -> Config:
    """Validate a parsed params mapping (defaults filled in) into a Config; ParamsError naming the key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: must be a mapping, got {_cut(raw)}")
    try:
        return Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ParamsError(_one_line(exc)) from None


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
    """yaml.SafeLoader refusing duplicate keys (YAML keeps the last silently), anchors and aliases (an
    alias bomb expands exponentially) and nesting deeper than _MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not allowed",
                                              event.start_mark)
        if self._depth >= _MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {_MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_cut(key)}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
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


def read_params(path: Path, depth: int = 0) -> dict:
    """The file's mapping, merged onto its `base` (a params file beside it) when it names one."""
    raw = read_yaml(path)
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
    return _merge(read_params(path.parent / base, depth + 1), raw)


def load_config(path: str | Path) -> Config:
    """Read, merge onto its base and validate a params file; ParamsError, one line starting with the path."""
    path = Path(path)
    raw = read_params(path)
    try:
        return validate_config(raw, source=str(path))
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def family(params_dir: str | Path) -> list[Path]:
    """The family of runs: every params file of params/ but the tests' smoke run."""
    return sorted(p for p in Path(params_dir).glob("*.yaml") if p.stem != "smoke")


def run_name(params_path: str | Path) -> str:
    """The run's folder name under reports/: the params file's stem (default.yaml -> default)."""
    return Path(params_path).stem
