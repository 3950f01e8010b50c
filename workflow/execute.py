"""Execute one notebook headlessly with papermill into reports/<run>/: what every workflow rule runs. The copy is
renamed into place when done (a full disk, a dead kernel or a kill leaves the previous one); one that raised is
published with its error, and the call fails. Paths papermill records are relative to the project. The copy records
what it was made from (its params, code and inputs) and the digests of what it wrote: the workflow plans from that
record (plan.py).
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from unittest import mock

import nbformat

from inverse_vae.constants import NOTEBOOKS
from inverse_vae.core.config import run_name
from inverse_vae.core.files import atomic_write, os_error_line, temp_file
from inverse_vae.errors import StudyError
from inverse_vae.progress import BATCH_ENV
from inverse_vae.runs.run import project_root, shown

from .jupyter_setup import KERNEL
from .pages import link_saved_figures
from .plan import ACROSS_RUNS, RECORD, Study, code_digest


class NotebookFailed(StudyError):
    """A notebook raised; its executed copy (with the error) is in the run folder."""


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def _publish(tmp: Path, output: Path, root: Path, record: dict) -> None:
    """papermill's finished notebook to `output`, its metadata naming `output` and holding its record, figures linked."""
    notebook = nbformat.read(tmp, as_version=4)
    notebook.metadata.setdefault("papermill", {})["output_path"] = shown(output, root)
    notebook.metadata[RECORD] = {"made_from": record}
    link_saved_figures(notebook, output.parent)
    atomic_write(output, nbformat.writes(notebook))


def execute(notebook: str | Path, params_file: str | Path, reports_root: str | Path = "reports",
            root: Path | None = None, say=print) -> Path:
    """Run notebooks/<name>.ipynb with these params into reports_root/<run>/<name>.ipynb; one line said when
    done. Raises NotebookFailed (its copy with the error published) or StudyError (a dead kernel, a disk)."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    root = project_root(root)
    notebook, folder = root / notebook, root / reports_root
    output = folder / ACROSS_RUNS.get(notebook.stem, run_name(params_file)) / notebook.name
    started, tmp = time.perf_counter(), None
    # what it reads, before it runs; a notebook of no rule (a test's, a researcher's) records its code alone
    study = Study.of(root, reports_root, [params_file]) if notebook.stem in (*NOTEBOOKS, *ACROSS_RUNS) else None
    made_from = study.made_from(output.parent.name, notebook.stem) if study else \
        {"depends_on": {"code": code_digest(notebook)}, "inputs": {}}
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(output)
        os.close(fd)
        # the kernel inherits BATCH_ENV: one summary line per progress bar
        with mock.patch.dict(os.environ, {BATCH_ENV: "1"}), warnings.catch_warnings(), contextlib.chdir(root):
            warnings.filterwarnings("ignore", message=r"The specified file .* does not end in")
            pm.execute_notebook(shown(notebook, root), shown(tmp, root), kernel_name=_kernel_name(), cwd=str(root),
                                parameters={"params_file": shown(root / params_file, root),
                                            "reports_root": shown(folder, root)},
                                progress_bar=False, log_output=False, extra_arguments=["--IPKernelApp.log_level=ERROR"])
        _publish(tmp, output, root, study.record(output.parent.name, notebook.stem, made_from) if study else made_from)
    except pm.PapermillExecutionError as exc:
        _publish(tmp, output, root, made_from)
        raise NotebookFailed(f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (the executed "
                             f"notebook with the error is {shown(output, root)})") from None
    except DeadKernelError:
        raise StudyError(f"{notebook.name}: the kernel died (killed, or out of memory?); {shown(output, root)} keeps "
                         f"its previous version") from None
    except OSError as exc:  # a full disk, a read-only folder: one line, the previous copy kept
        raise exc if isinstance(exc, StudyError) else StudyError(os_error_line(shown(output, root), exc)) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    say(f"{notebook.stem} [{output.parent.name}] {time.perf_counter() - started:.0f} s")
    return output
