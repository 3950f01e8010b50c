"""A run: a params file checked in full and bound to its folder, reports/<run>/. reports_root None (the notebooks'
default) is the git-ignored scratch root reports/scratch/, so a notebook run in JupyterLab never rewrites the committed
reports; a scratch run without a model starts from the committed run's, copied after its fingerprint is checked.
"""
from __future__ import annotations

import inspect
import math
import posixpath
import re
import shutil
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path, PurePath

from torch import nn

from .. import arithmetic
from ..core.checkpoints import fingerprint_changes, load_checkpoint
from ..core.config import Config, load_config, run_name
from ..core.files import atomic_write, clean_stale_temps, is_project_root, write_json
from ..core.model import build_sequential, check_architecture
from ..core.table import ends_in_bernoulli, kind_names, kind_of
from ..core.training import check_training_options
from ..errors import CheckpointError, ParamsError, StudyError
from ..inversion import solvers
from ..inversion.methods import METHODS, closed_form, encoder, layerwise_constrained
from ..inversion.posterior import svi

SCRATCH_ROOT = Path("reports") / "scratch"
# A run name becomes a folder under reports/: plain, and none of the names reports/ itself holds.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_RESERVED = frozenset({"summary", "explore", "scratch", "site", "assets", "index"})
_MAX_RUN_NAME = 100  # it names folders (reports/<run>/, reports/.old/<run>-checkpoints-<time>/), of 255 bytes at most
_PATHS = ("train.model_path", "train.progress_path", "test.model_path", "test.results_path")
# Method overrides that can finish: integer options bounded, every option a plain number, flag or name.
_OVERRIDE_LIMITS = {"steps": 100_000, "restarts": 100, "retries": 100, "record_every": 100_000, "chunk": 1 << 16,
                    "iters": 100_000, "seed": 2**32 - 1}
_FUNCTIONS = {"closed_form": closed_form, "layerwise_constrained": layerwise_constrained, "encoder": encoder,
              "optimize": solvers.optimize, "hybrid": solvers.optimize, "svi": svi}
_INTERNAL = {"decoder", "x", "model", "init", "dtype", "chain", "start", "options", "layers", "z0", "rec"}


def project_root(start: str | Path | None = None) -> Path:
    """The folder holding pyproject.toml and params/, from `start` (default: cwd) upwards."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project_root(folder):
            return folder
    raise StudyError(f"no project root (pyproject.toml beside params/) above {here}")


def shown(path: Path, root: Path) -> str:
    """`path` relative to the project when inside it: reports name no machine's checkout."""
    path = Path(path).absolute()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _inside(config: Config, key: str, where: str = "") -> str:
    """The path at params key `key`, refused when it would leave the run folder (absolute, or climbing out with ..)."""
    value = attrgetter(key)(config)
    normal = posixpath.normpath(value.replace("\\", "/"))
    if PurePath(value).is_absolute() or value.startswith("~"):
        raise ParamsError(f"{where}{key}: must be a path relative to the run folder reports/<run>/, got {value!r}")
    if normal == ".." or normal.startswith("../"):
        raise ParamsError(f"{where}{key}: must stay inside the run folder reports/<run>/, got {value!r}")
    return value


def _check_run_name(path: Path, root: Path | None) -> None:
    """A plain name that collides neither with what reports/ holds nor with another run's params file."""
    name = run_name(path)
    if not RUN_NAME.match(name) or name.lower() in _RESERVED:
        raise ParamsError(f"run name {name!r} (the params file's name) must be plain (letters, digits, '-', '_') and not "
                          f"one of {', '.join(sorted(_RESERVED))}, which reports/ holds itself: rename the file")
    if len(name) > _MAX_RUN_NAME:
        raise ParamsError(f"run name {name[:40]!r}... (the params file's name) has {len(name)} characters; at most "
                          f"{_MAX_RUN_NAME}, as it names folders under reports/ and reports/.old/: rename the file")
    if root is None:
        return
    twin = root / "params" / path.name
    if twin.is_file() and twin.resolve() != path.resolve():
        raise ParamsError(f"run name {name!r} is params/{path.name}'s: this file would rewrite that run's reports; rename it")
    rule = name.replace("-", "_")  # the workflow's rule names (NN_notebook__<run>) spell '-' as '_'
    other = next((p for p in sorted((root / "params").glob("*.yaml"))
                  if p.stem != name and p.stem.replace("-", "_") == rule), None)
    if other is not None:
        raise ParamsError(f"run name {name!r} and params/{other.name}'s {other.stem!r} give the same workflow rules ('-' and "
                          f"'_' are one there): rename one of them")


def _check_companion(config: Config, root: Path) -> None:
    """failure.squeezed_params: a params file of the project that loads (the workflow and notebook 04 read it)."""
    value = config.failure.squeezed_params
    if value is None:
        return
    path = root / value
    if PurePath(value).is_absolute() or value.startswith("~") or not path.resolve().is_relative_to(root.resolve()):
        raise ParamsError(f"failure.squeezed_params: must name a params file of the project, relative to it (like "
                          f"params/squeezed.yaml), got {value!r}")
    if not path.is_file():
        raise ParamsError(f"failure.squeezed_params: {value}: params file not found (relative to the project)")
    try:
        load_config(path)
    except ParamsError as exc:
        raise ParamsError(f"failure.squeezed_params: {exc}") from None


def _option_names(spec) -> set[str]:
    """The keywords a named method takes: its function's, and its solver's for optimize and hybrids."""
    names = set(inspect.signature(_FUNCTIONS[spec.function]).parameters)
    solver = spec.options.get("refine" if spec.function == "hybrid" else "method")
    if solver in solvers._SOLVERS:
        names |= set(inspect.signature(solvers._SOLVERS[solver]).parameters)
    return names - _INTERNAL


def _check_overrides(overrides) -> None:
    """methods.overrides: known methods, options their function takes, plain values, budgets that finish."""
    for name, options in (overrides or {}).items():
        if name not in METHODS:
            raise ParamsError(f"methods.overrides: unknown method {name!r}; known: {', '.join(METHODS)}")
        if not hasattr(options, "items"):
            raise ParamsError(f"methods.overrides.{name}: must be a mapping of options, got {options!r}")
        known = _option_names(METHODS[name])
        for key, value in options.items():
            where = f"methods.overrides.{name}.{key}"
            if key not in known:
                raise ParamsError(f"{where}: not an option of {name}; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, (int, float, str)) or \
                    (isinstance(value, float) and not math.isfinite(value)):
                raise ParamsError(f"{where}: must be a finite number or a name, got {value!r}")
            limit = _OVERRIDE_LIMITS.get(key)
            if limit is not None and (not isinstance(value, int) or not 0 <= value <= limit):
                raise ParamsError(f"{where}: must be an integer from 0 to {limit:,}, got {value!r}")


def _check_config(config: Config) -> None:
    """What the schema alone cannot see (paths, the network, the loss, the trainer's keywords, the methods), one
    ParamsError line naming the key or layer."""
    for key in _PATHS:
        _inside(config, key)
    check_architecture(config.model.architecture)
    decoder = build_sequential(config.model.architecture.decoder, "model.architecture.decoder")
    try:  # each layer a kind the table inverts, in the dtype it computes in; no Linear narrowing (rank < inputs)
        for i, layer in enumerate(decoder):
            kind_of(i, layer)
            if isinstance(layer, nn.Linear) and layer.in_features > layer.out_features:
                raise StudyError(f"decoder layer {i} (Linear) {layer.in_features}->{layer.out_features} is not injective: "
                                 f"it narrows, so pinv cannot recover its input")
    except StudyError as exc:
        raise ParamsError(f"model.architecture.decoder: cannot be inverted: {exc}") from None
    if config.train.reconstruction_loss == "bceloss" and not ends_in_bernoulli(decoder):
        raise ParamsError(f"train.loss[0]: bceloss needs outputs in [0, 1], but the decoder ends with "
                          f"{type(decoder[-1]).__name__}; end it with {kind_names('bernoulli')}, or use mseloss")
    check_training_options(config.train)
    for key in ("names", "noise_names"):
        unknown = [n for n in getattr(config.methods, key) or () if n not in METHODS]
        if unknown:
            raise ParamsError(f"methods.{key}: unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
    _check_overrides(config.methods.overrides)


def load_checked_config(path: str | Path, root: Path | None = None) -> Config:
    """load_config, then every check: one line that starts with the file's path."""
    config = load_config(path)
    try:
        _check_run_name(Path(path), root)
        _check_config(config)
        if root is not None:
            _check_companion(config, root)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return config


@dataclass(frozen=True)
class Run:
    """A validated config bound to its run folder. Its paths are checked when read: a replaced config cannot leave."""

    config: Config
    root: Path  # the project
    dir: Path  # reports/<run>/

    name = property(lambda self: self.dir.name)
    scratch = property(lambda self: self.dir.is_relative_to(self.root / SCRATCH_ROOT))
    checkpoints = property(lambda self: self._inside("train.model_path"))
    progress = property(lambda self: self._inside("train.progress_path"))
    model_file = property(lambda self: self._inside("test.model_path"))  # what notebooks 02-05 evaluate and invert
    metrics = property(lambda self: self._inside("test.results_path") / "metrics")
    data_root = property(lambda self: self.root / self.config.data.root)  # an absolute data.root stays itself

    def _inside(self, key: str) -> Path:
        return self.dir / _inside(self.config, key, f"run {self.name}: ")

    def figure(self, name: str) -> Path:
        figures = self._inside("test.results_path") / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        return figures / name

    def write_metrics(self, notebook: str, values: dict) -> Path:
        return write_json(self.metrics / f"{notebook}.json", {**values, "arithmetic": arithmetic.record()})

    def shown(self, path: Path) -> str:
        return shown(path, self.root)


def open_run(params_file: str | Path, reports_root: str | Path | None = "reports", root: str | Path | None = None,
             say=print) -> Run:
    """Check the params file in full and bind it to reports_root/<params stem>/ (relative to the project);
    reports_root None is the scratch root reports/scratch/ (git-ignored), said in one line."""
    root = project_root(root)
    config = load_checked_config(root / params_file, root)
    run = Run(config, root, root / (SCRATCH_ROOT if reports_root is None else reports_root) / run_name(params_file))
    if run.dir.is_dir():
        clean_stale_temps(run.dir)  # what killed writers left (files older than a minute)
    if reports_root is None:
        say(f"scratch run: writing into {run.shown(run.dir)}/ (ignored by git; JupyterLab saves this notebook there "
            f"with its outputs, and in notebooks/ without); set reports_root = \"reports\" to write reports/{run.name}/ "
            f"on purpose")
        _start_from_committed(run, say)
    return run


def _start_from_committed(run: Run, say) -> None:
    """A scratch run without its model gets the committed run's final checkpoint (copied: nothing tracked is
    ever written), when that checkpoint was trained with these very params."""
    committed = run.root / "reports" / run.name / run.model_file.relative_to(run.dir)
    if run.model_file.is_file() or not committed.is_file():
        return
    try:
        changed = fingerprint_changes(load_checkpoint(committed), run.config)
        why = f"was trained with other params ({', '.join(changed[:4])})"
    except CheckpointError as exc:
        changed, why = True, f"is not usable ({exc})"
    if changed:
        say(f"note: the committed model of {run.name} {why}; notebook 01 trains this scratch run")
        return
    atomic_write(run.model_file, committed.read_bytes())
    shutil.copystat(committed, run.model_file)
    # and from what the committed run cached (its probe, its t-SNE): each entry's key names the checkpoint's
    # SHA-256 and the settings that made it, so an entry these params would not make is recomputed on use
    cache = sorted((run.root / "reports" / run.name / "cache").glob("*.npz"))
    for entry in cache:
        if not (run.dir / "cache" / entry.name).is_file():
            atomic_write(run.dir / "cache" / entry.name, entry.read_bytes())
    say(f"scratch run: starts from the committed model {run.shown(committed)} (copied, fingerprint checked)"
        + (f" and its cache ({', '.join(p.stem for p in cache)})" if cache else ""))
