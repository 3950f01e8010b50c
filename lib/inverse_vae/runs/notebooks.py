"""Execute the study's notebooks headlessly with papermill, one params file at a time.

Each executed notebook is written beside its final name and renamed into place when papermill is
done, so a full disk, a dead kernel or a kill leaves the previous executed notebook, never half of
one; a notebook that raised is still published (the error is in it). The runner holds the run
folder's lock (paths.run_lock) for the whole call.

Paths papermill records in an executed notebook (input_path, output_path, the parameters) are
relative to the project when inside it, so no report names the machine's checkout. The kernels
run with INVERSE_VAE_BATCH=1 (progress.py: one summary line instead of a live bar). The terminal
gets one line per notebook: `02_evaluate [default] ... 41 s`.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path

from ..core.config import run_name
from ..core.files import atomic_write, os_error_line, temp_file
from ..errors import StudyError
from ..progress import BATCH_ENV
from .checks import load_checked_config
from .figure_links import linked_notebook_text
from .paths import open_run, project_root, run_lock, set_aside
from .plan import SUMMARY, check_needs

KERNEL = "inverse-vae"  # registered by the set-up scripts; falls back to this interpreter
# The kernel's own log (its stderr is the terminal's): errors only, so each notebook stays one line there
# (ipykernel warns at every start that its local TCP sockets are unencrypted).
KERNEL_QUIET = ["--IPKernelApp.log_level=ERROR"]


class NotebookFailed(StudyError):
    """A notebook raised; its executed copy (with the error) is in the run folder."""


class KernelDied(StudyError):
    """The kernel running a notebook died (killed, out of memory); the previous executed copy is kept."""


def study_notebooks(root: Path) -> list[Path]:
    """notebooks/NN_name.ipynb in order: the per-run notebooks (not the summary across runs, plan.SUMMARY)."""
    return sorted(p for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.stem != SUMMARY.name)


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def shown(path: str | Path, root: Path) -> str:
    """`path` relative to the project root when inside it, else as given: what the executed notebooks
    and the terminal show (no machine's absolute checkout path in a committed report)."""
    path = Path(path)
    for candidate in (path, path.absolute(), path.resolve()):
        with contextlib.suppress(ValueError):
            return str(candidate.relative_to(root))
    return str(path)


@contextlib.contextmanager
def _headless_in(root: Path):
    """cwd = the project root (papermill resolves the relative paths against it) and BATCH_ENV=1
    (inherited by the kernel), for the block; both restored after."""
    before_cwd, before_env = Path.cwd(), os.environ.get(BATCH_ENV)
    os.chdir(root)
    os.environ[BATCH_ENV] = "1"
    try:
        yield
    finally:
        os.chdir(before_cwd)
        if before_env is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = before_env


def _publish(tmp: Path, output: Path, root: Path) -> None:
    """Move papermill's finished notebook to `output`, atomically; its metadata names `output`, as
    when papermill wrote there itself. Figures the notebook saved beside it are linked, not embedded
    (figure_links: each figure stored once)."""
    text = tmp.read_text(encoding="utf-8")
    text = text.replace(json.dumps(shown(tmp, root), ensure_ascii=False),
                        json.dumps(shown(output, root), ensure_ascii=False), 1)
    text = linked_notebook_text(text, output.parent)
    atomic_write(output, text)
    tmp.unlink()


def _papermill(notebook: Path, params_file: str, tmp: Path, reports_root: str, root: Path) -> None:
    import papermill as pm

    with warnings.catch_warnings(), _headless_in(root):  # the temporary name does not end in .ipynb, on purpose
        warnings.filterwarnings("ignore", message=r"The specified file .* does not end in")
        pm.execute_notebook(
            shown(notebook, root), shown(tmp, root),
            parameters={"params_file": shown(params_file, root), "reports_root": shown(reports_root, root)},
            kernel_name=_kernel_name(), cwd=str(root), progress_bar=False, log_output=False,
            extra_arguments=KERNEL_QUIET,
        )


@contextlib.contextmanager
def _announced(label: str, log):
    """One terminal line per notebook: `label ...` when it starts, the seconds (or `failed after`) when
    it ends. With log=print the line is written in two parts; any other log gets the whole line at the end."""
    started = time.perf_counter()
    if log is print:
        print(f"{label} ...", end="", flush=True)
        end = lambda tail: print(f" {tail}", flush=True)  # noqa: E731
    else:
        end = lambda tail: log(f"{label} ... {tail}")  # noqa: E731
    try:
        yield
    except BaseException:
        end(f"failed after {time.perf_counter() - started:.0f} s")
        raise
    end(f"{time.perf_counter() - started:.0f} s")


def execute(notebook: Path, params_file: str, output: Path, reports_root: str, root: Path, log=print) -> Path:
    """Run one notebook into `output`. Raises NotebookFailed naming the executed copy, KernelDied, or
    WriteError (full disk, read-only folder) naming the file; `output` is then the previous version."""
    with _announced(f"{notebook.stem} [{run_name(params_file)}]", log):
        return _execute(notebook, params_file, output, reports_root, root)


def _execute(notebook: Path, params_file: str, output: Path, reports_root: str, root: Path) -> Path:
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    tmp = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(output)
        os.close(fd)  # papermill opens it by name, after each cell
        _papermill(notebook, params_file, tmp, reports_root, root)
        _publish(tmp, output, root)
    except pm.PapermillExecutionError as exc:
        _publish(tmp, output, root)  # complete, with the error in it: the reader's first stop
        raise NotebookFailed(f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                             f"(the executed notebook with the error is {shown(output, root)})") from None
    except DeadKernelError:
        raise KernelDied(f"{notebook.name}: the kernel died while running it (killed, or out of memory?); "
                         f"{shown(output, root)} keeps its previous version: run it again") from None
    except OSError as exc:
        if isinstance(exc, StudyError):
            raise
        raise StudyError(os_error_line(shown(output, root), exc)) from None
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
              root: Path | None = None, log=print, fresh: bool = False) -> list[Path]:
    """Validate every params file first (nothing written on a bad one), then run the notebooks.

    Every run folder is locked for the whole call: a second runner of the same run refuses at once
    (RunBusy) instead of interleaving checkpoints and notebooks with this one. `fresh` first moves
    each run's earlier outputs aside (paths.set_aside: into <reports_root>/.old/, nothing deleted),
    so the run starts from nothing; it needs the selection to start with the first notebook.
    """
    root = project_root(root)
    for p in params_files:
        load_checked_config(p if Path(p).is_absolute() else root / p)
    notebooks = _selected(root, only)
    first = study_notebooks(root)[0]
    if fresh and notebooks[0] != first:
        raise StudyError(f"--fresh starts a run from nothing, so it must run {first.stem} too "
                         f"(--only {','.join(only or [])} leaves it out): add {first.name[:2]}, or drop --fresh")
    runs = [(p, open_run(p, reports_root, root)) for p in params_files]
    outputs = []
    with contextlib.ExitStack() as locks:
        for _, run in runs:
            locks.enter_context(run_lock(run.dir))
        for _, run in runs if fresh else ():
            moved = set_aside(run.dir)
            if moved is not None:
                log(f"{run.name}: earlier outputs set aside in {shown(moved, root)}/ (nothing deleted)")
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


def run_summary(reports_root: str = "reports", root: Path | None = None, log=print) -> Path:
    """Execute notebooks/99_summary.ipynb once, over every run under reports_root, into
    <reports_root>/summary/99_summary.ipynb (its figures/ and metrics/ beside it); not per run: it reads
    whichever runs' metrics exist and says which are missing. Errors as execute()."""
    from ..study.summary import SUMMARY_DIR

    root = project_root(root)
    notebook = root / "notebooks" / f"{SUMMARY.name}.ipynb"
    folder = Path(reports_root) if Path(reports_root).is_absolute() else root / reports_root
    if not folder.is_dir():
        raise StudyError(f"reports folder {shown(folder, root)} not found: run ./run_all.sh (or run-notebooks) first")
    output = folder / SUMMARY_DIR / notebook.name
    # params/default.yaml: the notebook reads the family from its folder (every params file but smoke)
    with run_lock(output.parent), _announced(f"{SUMMARY.name} [all runs]", log):
        return _execute(notebook, "params/default.yaml", output, reports_root, root)
