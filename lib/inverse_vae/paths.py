"""Where a run's files live: reports/<run>/ and the params' paths relative to it."""
from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .params import load_params, run_name


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
    """A params file bound to its run folder."""

    params: dict
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
        return self._resolve(self.params["train"]["model_path"])

    @property
    def progress(self) -> Path:
        return self._resolve(self.params["train"]["progress_path"])

    @property
    def model_file(self) -> Path:
        return self._resolve(self.params["test"]["model_path"])

    @property
    def results(self) -> Path:
        return self._resolve(self.params["test"]["results_path"])

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def metrics(self) -> Path:
        return self.results / "metrics"

    @property
    def data_root(self) -> Path:
        p = Path(self.params["data"]["root"])
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
    like the main run.
    """
    params = copy.deepcopy(run.params)
    params["train"].update(train_updates)
    return Run(params=params, root=run.root, dir=run.dir / "variants" / name)


def open_run(params_file: str | Path, reports_root: str | Path = "reports", root: str | Path | None = None) -> Run:
    """Validate the params file and bind it to reports_root/<params stem>/ (relative to the project)."""
    root = project_root(root)
    params_file = Path(params_file)
    if not params_file.is_absolute():
        params_file = root / params_file
    params = load_params(params_file)
    reports_root = Path(reports_root)
    if not reports_root.is_absolute():
        reports_root = root / reports_root
    return Run(params=params, root=root, dir=reports_root / run_name(params_file))


def _plain(value):
    """JSON-safe copy: numpy/torch scalars to floats, inf/nan to strings JSON can hold."""
    if isinstance(value, dict):
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(_plain(values), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path
