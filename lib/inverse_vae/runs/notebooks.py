"""Execute the study's notebooks headlessly with papermill, one params file at a time.

Each executed notebook is written beside its final name and renamed into place when papermill is
done, so a full disk, a dead kernel or a kill leaves the previous executed notebook, never half of
one; a notebook that raised is still published (the error is in it). The runner holds the run
folder's lock (paths.run_lock) for the whole call.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

from ..core.config import run_name
from ..core.files import atomic_write, os_error_line, temp_file
from ..errors import StudyError
from .checks import load_checked_config
from .paths import open_run, project_root, run_lock
from .plan import check_needs

KERNEL = "inverse-vae"  # registered by the set-up scripts; falls back to this interpreter


class NotebookFailed(StudyError):
    """A notebook raised; its executed copy (with the error) is in the run folder."""


class KernelDied(StudyError):
    """The kernel running a notebook died (killed, out of memory); the previous executed copy is kept."""


def study_notebooks(root: Path) -> list[Path]:
    """notebooks/NN_name.ipynb in order."""
    return sorted(p for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def _publish(tmp: Path, output: Path) -> None:
    """Move papermill's finished notebook to `output`, atomically; its metadata names `output`, as
    when papermill wrote there itself (the committed reports stay as they were)."""
    text = tmp.read_text(encoding="utf-8")
    text = text.replace(json.dumps(str(tmp), ensure_ascii=False), json.dumps(str(output), ensure_ascii=False), 1)
    atomic_write(output, text)
    tmp.unlink()


def _papermill(notebook: Path, params_file: str, tmp: Path, reports_root: str, root: Path) -> None:
    import papermill as pm

    with warnings.catch_warnings():  # the temporary name does not end in .ipynb, on purpose
        warnings.filterwarnings("ignore", message=r"The specified file .* does not end in")
        pm.execute_notebook(
            str(notebook), str(tmp),
            parameters={"params_file": str(params_file), "reports_root": str(reports_root)},
            kernel_name=_kernel_name(), cwd=str(root), progress_bar=False, log_output=False,
        )


def execute(notebook: Path, params_file: str, output: Path, reports_root: str, root: Path, log=print) -> Path:
    """Run one notebook into `output`. Raises NotebookFailed naming the executed copy, KernelDied, or
    WriteError (full disk, read-only folder) naming the file; `output` is then the previous version."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    log(f"running {notebook.name} with {params_file} -> {output}")
    tmp = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(output)
        os.close(fd)  # papermill opens it by name, after each cell
        _papermill(notebook, params_file, tmp, reports_root, root)
        _publish(tmp, output)
    except pm.PapermillExecutionError as exc:
        _publish(tmp, output)  # complete, with the error in it: the reader's first stop
        raise NotebookFailed(f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                             f"(the executed notebook with the error is {output})") from None
    except DeadKernelError:
        raise KernelDied(f"{notebook.name}: the kernel died while running it (killed, or out of memory?); "
                         f"{output} keeps its previous version: run it again") from None
    except OSError as exc:
        if isinstance(exc, StudyError):
            raise
        raise StudyError(os_error_line(output, exc)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return output


def _selected(root: Path, only: list[str] | None) -> list[Path]:
    notebooks = study_notebooks(root)
    if only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in only or nb.stem in only]
        if not notebooks:
            raise StudyError(f"--only {','.join(only)}: no notebook in notebooks/ matches")
    return notebooks


def run_study(params_files: list[str], only: list[str] | None = None, reports_root: str = "reports",
              root: Path | None = None, log=print) -> list[Path]:
    """Validate every params file first (nothing written on a bad one), then run the notebooks.

    Every run folder is locked for the whole call: a second runner of the same run refuses at once
    (RunBusy) instead of interleaving checkpoints and notebooks with this one.
    """
    root = project_root(root)
    for p in params_files:
        load_checked_config(p if Path(p).is_absolute() else root / p)
    notebooks = _selected(root, only)
    runs = [(p, open_run(p, reports_root, root)) for p in params_files]
    outputs = []
    with contextlib.ExitStack() as locks:
        for _, run in runs:
            locks.enter_context(run_lock(run.dir))
        for p, run in runs:
            for nb in notebooks:
                check_needs(nb.stem, run)  # after the notebooks before it ran: 01 makes what 02 needs
                outputs.append(execute(nb, p, run.dir / nb.name, reports_root, root, log))
    return outputs


def make_goldens(root: Path | None = None, params_file: str = "params/smoke.yaml", log=print) -> None:
    """Refresh what the notebook tests compare against, from the smoke params.

    Writes tests/goldens/NN_name.ipynb (each notebook executed: nbval re-runs them and fails on any
    cell that raises, and a test checks their code equals the notebooks') and
    tests/goldens/metrics/NN_name.json (the smoke run's metrics: tests/test_golden_metrics.py
    compares a fresh run's with these, within tolerances that another CPU's rounding stays inside).
    Run it after changing a notebook or a computation on purpose, then review the metrics diff.
    """
    import shutil

    root = project_root(root)
    reports_root = "tests/.nbval_reports"  # what the goldens' injected parameters point at
    shutil.rmtree(root / reports_root, ignore_errors=True)
    goldens = root / "tests" / "goldens"
    for nb in study_notebooks(root):
        execute(nb, params_file, goldens / nb.name, reports_root, root, log)
    metrics = goldens / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    shutil.copytree(root / reports_root / run_name(params_file) / "metrics", metrics)
    log(f"wrote {len(list(metrics.glob('*.json')))} golden metrics files into {metrics.relative_to(root)}")
