"""Where a run's files live: reports/<run>/ and the config's paths relative to it."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Config, run_name
from ..core.files import atomic_write
from ..core.training import check_training_options
from .checks import load_checked_config


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


@dataclass(frozen=True)
class Run:
    """A validated config bound to its run folder."""

    config: Config
    root: Path  # project root
    dir: Path  # reports/<run>/

    def _resolve(self, p: str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.dir / p

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def checkpoints(self) -> Path:
        """train.model_path: where training writes model_<epoch>.pt."""
        return self._resolve(self.config.train.model_path)

    @property
    def progress(self) -> Path:
        """train.progress_path: the loss figure at each checkpoint, as the original saved it."""
        return self._resolve(self.config.train.progress_path)

    @property
    def model_file(self) -> Path:
        """test.model_path: the checkpoint notebooks 02-05 evaluate and invert."""
        return self._resolve(self.config.test.model_path)

    @property
    def results(self) -> Path:
        """test.results_path: the folder holding figures/ and metrics/."""
        return self._resolve(self.config.test.results_path)

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


def open_run(params_file: str | Path, reports_root: str | Path = "reports", root: str | Path | None = None) -> Run:
    """Validate the params file (every check) and bind it to reports_root/<params stem>/ (relative to the project)."""
    root = project_root(root)
    params_file = Path(params_file)
    if not params_file.is_absolute():
        params_file = root / params_file
    config = load_checked_config(params_file)
    reports_root = Path(reports_root)
    if not reports_root.is_absolute():
        reports_root = root / reports_root
    return Run(config=config, root=root, dir=reports_root / run_name(params_file))


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
