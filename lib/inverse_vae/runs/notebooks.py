"""Execute the study's notebooks headlessly with papermill, one params file at a time."""
from __future__ import annotations

from pathlib import Path

from ..errors import StudyError
from .checks import load_checked_config
from .paths import open_run, project_root
from .plan import check_needs

KERNEL = "inverse-vae"  # registered by the set-up scripts; falls back to this interpreter


class NotebookFailed(StudyError):
    """A notebook raised; its executed copy (with the error) is in the run folder."""


def study_notebooks(root: Path) -> list[Path]:
    """notebooks/NN_name.ipynb in order."""
    return sorted(p for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def execute(notebook: Path, params_file: str, output: Path, reports_root: str, root: Path, log=print) -> Path:
    """Run one notebook into `output`. Raises NotebookFailed naming the executed copy."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    log(f"running {notebook.name} with {params_file} -> {output}")
    try:
        pm.execute_notebook(
            str(notebook), str(output),
            parameters={"params_file": str(params_file), "reports_root": str(reports_root)},
            kernel_name=_kernel_name(), cwd=str(root), progress_bar=False, log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                             f"(the executed notebook with the error is {output})") from None
    return output


def run_study(params_files: list[str], only: list[str] | None = None, reports_root: str = "reports",
              root: Path | None = None, log=print) -> list[Path]:
    """Validate every params file first (nothing written on a bad one), then run the notebooks."""
    root = project_root(root)
    for p in params_files:
        load_checked_config(p if Path(p).is_absolute() else root / p)
    notebooks = study_notebooks(root)
    if only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in only or nb.stem in only]
        if not notebooks:
            raise StudyError(f"--only {','.join(only)}: no notebook in notebooks/ matches")
    outputs = []
    for p in params_files:
        run = open_run(p, reports_root, root)
        for nb in notebooks:
            check_needs(nb.stem, run)  # after the notebooks before it ran: 01 makes what 02 needs
            outputs.append(execute(nb, p, run.dir / nb.name, reports_root, root, log))
    return outputs


def make_goldens(root: Path | None = None, params_file: str = "params/smoke.yaml", log=print) -> None:
    """Re-execute every notebook on the smoke params into tests/goldens/ (the nbval references)."""
    import shutil

    root = project_root(root)
    reports_root = "tests/.nbval_reports"  # what the goldens' injected parameters point at
    shutil.rmtree(root / reports_root, ignore_errors=True)
    for nb in study_notebooks(root):
        execute(nb, params_file, root / "tests" / "goldens" / nb.name, reports_root, root, log)

