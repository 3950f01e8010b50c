"""Where a run's files live: reports/<run>/ and the config's paths relative to it; the lock that
keeps two runners out of one run folder; the scratch root of interactive runs; setting a run aside.

reports_root None (the notebooks' default parameters) is the git-ignored scratch root
reports/scratch/: a notebook opened in JupyterLab and run as it is never rewrites the committed
reports. The runner (run_all.sh) passes "reports".
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Config, run_name
from ..core.files import TEMP_NAME, atomic_write, clean_stale_temps, os_error_line
from ..core.training import check_training_options
from ..errors import ParamsError, StudyError
from .checks import load_checked_config, path_problem

LOCK_NAME = ".lock"
SCRATCH_ROOT = Path("reports") / "scratch"  # reports_root None: interactive runs, ignored by git
OLD_ROOT = Path("reports") / ".old"  # set_aside: earlier outputs of a run started afresh, ignored by git


class RunBusy(StudyError):
    """Another process is running notebooks into the same run folder."""


def project_root(start: str | Path | None = None) -> Path:
    """The folder holding pyproject.toml and params/, found from `start` (default: cwd) upwards.

    Lets a notebook run from notebooks/ in JupyterLab, from the root under papermill, or from
    tests/ under nbval.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return folder
    raise FileNotFoundError(f"no project root (pyproject.toml beside params/) above {here}")


class _ParamsPath:
    """A path the params give (section.key), resolved inside the run folder when read from a Run.

    checks.py refuses a path that leaves the folder up front; a config changed afterwards (by
    variant() or a test) is held to the same rule here.
    """

    def __init__(self, key: str, doc: str):
        self.section, self.field = key.split(".")
        self.__doc__ = f"{key}: {doc}"

    def __get__(self, run: Run | None, owner=None):
        if run is None:
            return self
        p = getattr(getattr(run.config, self.section), self.field)
        problem = path_problem(p)
        if problem:
            raise ParamsError(f"run {run.name}: {self.section}.{self.field}: {problem}")
        return run.dir / p


@dataclass(frozen=True)
class Run:
    """A validated config bound to its run folder."""

    config: Config
    root: Path  # project root
    dir: Path  # reports/<run>/

    checkpoints = _ParamsPath("train.model_path", "where training writes model_<epoch>.pt")
    progress = _ParamsPath("train.progress_path", "the loss figure at each checkpoint, as the original saved it")
    model_file = _ParamsPath("test.model_path", "the checkpoint notebooks 02-05 evaluate and invert")
    results = _ParamsPath("test.results_path", "the folder holding figures/ and metrics/")

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def scratch(self) -> bool:
        """True for a run in the scratch root (reports_root None), variants included."""
        return self.dir.is_relative_to(self.root / SCRATCH_ROOT)

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def metrics(self) -> Path:
        return self.results / "metrics"

    @property
    def data_root(self) -> Path:
        p = Path(self.config.data.root)
        return p if p.is_absolute() else self.root / p

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name

    def write_metrics(self, notebook: str, values: dict) -> Path:
        return write_json(self.metrics / f"{notebook}.json", values)

    def read_metrics(self, notebook: str) -> dict:
        path = self.metrics / f"{notebook}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run notebooks/{notebook}.ipynb first")
        return json.loads(path.read_text())


def variant(run: Run, name: str, train_updates: dict) -> Run:
    """The same run with some train settings changed, living in reports/<run>/variants/<name>/.

    Notebooks use it for a model trained differently (say, squeezed targets), cached and resumable
    like the main run. The changed config is validated again (ParamsError naming the key).
    """
    config = run.config.replace(train=train_updates)
    check_training_options(config.train)  # the architecture is unchanged and was checked already
    return Run(config=config, root=run.root, dir=run.dir / "variants" / name)


def open_run(params_file: str | Path, reports_root: str | Path | None = "reports",
             root: str | Path | None = None, log=print, *, notebook: str | None = None) -> Run:
    """Validate the params file (every check) and bind it to reports_root/<params stem>/ (relative to the project).

    reports_root None is the scratch root reports/scratch/ (ignored by git): log() gets one line saying
    so and how to write the run's reports instead. A scratch run reads only what it made itself.
    `notebook` (e.g. "02_evaluate"): also check what that notebook needs (plan.check_needs), so a
    notebook opened by hand stops at once with one line saying what to run first.
    """
    root = project_root(root)
    params_file = Path(params_file)
    if not params_file.is_absolute():
        params_file = root / params_file
    config = load_checked_config(params_file)
    scratch = reports_root is None
    reports_root = Path(SCRATCH_ROOT if scratch else reports_root)
    if not reports_root.is_absolute():
        reports_root = root / reports_root
    run = Run(config=config, root=root, dir=reports_root / run_name(params_file))
    if scratch:
        log(f"scratch run: writing into {run.dir.relative_to(root)}/ (ignored by git; the committed reports stay as "
            f"they are); set reports_root = \"reports\" to write reports/{run.name}/ on purpose")
    _tidy(run.dir)
    if notebook is not None:
        from .plan import check_needs

        check_needs(notebook, run)
    return run


def set_aside(run_dir: str | Path, now: float | None = None) -> Path | None:
    """Move everything in a run folder (checkpoints, figures, metrics, executed notebooks, cache,
    variants) into reports/.old/<run>-<YYYYmmdd-HHMMSS>/ beside it, deleting nothing; the lock file
    stays. Returns the folder it moved them into, or None when there was nothing to move.

    The caller holds the run's lock (run_lock), so no runner writes into it meanwhile.
    """
    run_dir = Path(run_dir)
    entries = sorted(p for p in run_dir.iterdir() if p.name != LOCK_NAME) if run_dir.is_dir() else []
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    old_root = run_dir.parent / OLD_ROOT.name
    target = old_root / f"{run_dir.name}-{stamp}"
    n = 1
    while target.exists():  # twice in one second
        n += 1
        target = old_root / f"{run_dir.name}-{stamp}-{n}"
    try:
        target.mkdir(parents=True)
        for entry in entries:
            os.rename(entry, target / entry.name)  # same file system: nothing is copied, nothing lost
    except OSError as exc:
        raise StudyError(f"cannot set {run_dir} aside into {target}: {exc.strerror or exc}; nothing was deleted "
                         f"(what was moved is there, the rest still in {run_dir})") from None
    return target


def _tidy(run_dir: Path) -> None:
    """Remove what killed writers left in a run folder, unless a runner holds it (it tidied when it
    started, and its notebooks, which open the run too, must never wait for their own runner)."""
    if not any(TEMP_NAME.match(p.name) for p in run_dir.rglob(".*.tmp")):
        return  # the common case: no lock file is created for nothing
    with contextlib.suppress(StudyError), run_lock(run_dir):
        pass


_HELD: dict[Path, int] = {}  # run folders this process holds -> depth, so holding again never waits


def _acquire(run_dir: Path) -> int:
    """An fd holding run_dir/.lock exclusively (with this pid written in it), or RunBusy."""
    lock = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StudyError(os_error_line(lock, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunBusy(f"{run_dir}: another run of {run_dir.name!r} is writing into this folder (process {holder}, "
                      f"lock {LOCK_NAME}); wait for it to finish, or stop it") from None
    with contextlib.suppress(OSError):  # the pid only improves the message above
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold reports/<run>/.lock for the block: a second process asking for it gets RunBusy at once.

    flock is released by the kernel when the process dies, so a killed runner never leaves a stale
    lock. On first acquisition the folder's orphaned temporary files (older than now) are removed.
    Re-entrant within a process. The notebooks a runner starts only ever try it without waiting
    (open_run's tidy-up), so a runner never deadlocks on its own kernels.
    """
    key = Path(run_dir).resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield key
        finally:
            _HELD[key] -= 1
        return
    started = time.time()
    fd = _acquire(key)
    _HELD[key] = 1
    try:
        clean_stale_temps(key, before=started)
        yield key
    finally:
        del _HELD[key]
        os.close(fd)  # releases the flock


def _plain(value):
    """JSON-safe copy: numpy/torch scalars to floats, inf/nan to strings JSON can hold, a config's
    read-only mappings to dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(path: str | Path, values: dict) -> Path:
    """Write JSON atomically so a reader never sees half a file."""
    return atomic_write(path, json.dumps(_plain(values), indent=2, sort_keys=True) + "\n")
