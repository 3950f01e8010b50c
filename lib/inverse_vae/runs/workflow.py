"""What the Snakefile needs to know of the study: each notebook's inputs, outputs, and the params its results
depend on, so an edited params file re-runs exactly the notebooks it affects.

Every notebook depends on the model (the params fingerprint) and on its own code cells; each also on the keys
it reads, below. A hypothesis or a comment re-runs nothing; nor does a change in lib/ (the tests guard it:
force the notebooks it touches with --force).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core.checkpoints import params_fingerprint
from ..core.config import Config, load_config, run_name
from ..errors import StudyError

# The params each notebook's results depend on, beside the model (dotted keys of the params file).
READS = {
    "01_train": ("train.train_epochs", "train.plot_epochs", "train.model_path", "train.progress_path"),
    "02_evaluate": ("test.batch_size", "test.n_components", "evaluate", "data.test_subset"),
    "03_invert": ("invert", "evaluate.tsne_samples", "evaluate.probe_max_iter", "test.n_components", "data.test_subset"),
    "04_failure_analysis": ("failure", "invert.n_prior", "evaluate.probe_max_iter", "data.test_subset"),
    "05_inverse_methods": ("methods", "invert.n_prior", "evaluate.probe_max_iter", "data.test_subset"),
}
MODEL = ("train.train_epochs", "test.model_path", "test.allow_intermediate")  # which checkpoint is evaluated


def _pick(plain: dict, key: str):
    for part in key.split("."):
        plain = plain.get(part) if isinstance(plain, dict) else None
    return plain


def code_digest(notebook: Path) -> str:
    """The notebook's code cells (papermill's injected parameters aside): an edited explanation re-runs nothing."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells
                     if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", []))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def depends_on(config: Config, notebook: str, root: Path) -> str:
    """What `notebook`'s results depend on, as one line of JSON for Snakemake's params: a change re-runs it."""
    plain = config.to_dict()
    values = {"model": params_fingerprint(config), **{k: _pick(plain, k) for k in MODEL + READS[notebook]},
              "code": code_digest(root / "notebooks" / f"{notebook}.ipynb")}
    if notebook == "04_failure_analysis" and config.failure.squeezed_params:
        values["squeezed"] = params_fingerprint(load_config(root / config.failure.squeezed_params))
    return json.dumps(values, sort_keys=True, default=str)


def outputs(config: Config, run: str, notebook: str, reports: str) -> dict[str, str]:
    """A notebook's executed copy and metrics. Not 01's checkpoint: Snakemake deletes a rule's outputs before running
    it again, and a re-run resumes from the checkpoint (02-05 wait for 01's metrics, written after the model)."""
    folder = f"{reports}/{run}"
    results = f"{folder}/{config.test.results_path}".replace("/./", "/").rstrip("/.")
    return {"notebook": f"{folder}/{notebook}.ipynb", "metrics": f"{results}/metrics/{notebook}.json"}


def inputs(config: Config, params_file: Path, notebook: str, reports: str, root: Path) -> list[str]:
    """What a notebook reads that another rule makes: 01's outputs (for 02-05), and the squeezed run's (for the
    default's 04). The notebook and params files are not inputs: their content decides (`depends_on`)."""
    if notebook == "01_train":
        return []
    needs = list(outputs(config, run_name(params_file), "01_train", reports).values())
    if notebook == "04_failure_analysis" and config.failure.squeezed_params:
        other = root / config.failure.squeezed_params
        needs.append(outputs(load_config(other), run_name(other), "01_train", reports)["metrics"])
    return needs


def failed(notebook: dict) -> bool:
    """Whether an executed notebook holds an error (it raised, and was published with it)."""
    return any(o.get("output_type") == "error" for c in notebook["cells"] for o in c.get("outputs", []))


def stale(root: Path, reports: str = "reports", runs: str = "") -> list[str]:
    """The rules whose executed notebook is not what its notebook would make now (other code cells, an error
    in it, metrics that cannot be read), of the runs of these params files (comma-separated; none: every run
    there): a first run in a fresh checkout adopts the other reports as up to date, not these."""
    found, wanted = [], {Path(p).stem for p in runs.split(",")} if runs else None
    for executed in sorted((root / reports).glob("*/[0-9][0-9]_*.ipynb")):
        notebook, run = root / "notebooks" / executed.name, executed.parent.name
        if run in ("scratch", "summary", "explore") or not notebook.is_file() or (wanted and run not in wanted):
            continue
        expected = code_digest(notebook)
        try:
            outdated = failed(json.loads(executed.read_text(encoding="utf-8"))) or code_digest(executed) != expected
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # truncated, empty, not UTF-8, not a notebook
            shown = executed.relative_to(root) if executed.is_relative_to(root) else executed
            raise StudyError(f"{shown}: not a readable executed notebook ({type(exc).__name__}: truncated, empty, not "
                             f"UTF-8 or not a notebook): delete it (its rule then runs again) or restore it from git") from None
        if outdated or arithmetic_of(executed.parent / "metrics" / f"{executed.stem}.json") == "damaged":
            found.append(f"{executed.stem}__{run}".replace("-", "_"))
    return found


def arithmetic_of(metrics: Path) -> str | None:
    """How a metrics file was made: "pinned" (arithmetic.py's path), "off" (another path, or before the pins were
    recorded), "damaged" (truncated, not a JSON object: its notebook runs again), None (no file)."""
    if not metrics.is_file():
        return None
    try:
        made = json.loads(metrics.read_text(encoding="utf-8")).get("arithmetic")
    except (ValueError, AttributeError):  # not JSON, not UTF-8, or JSON but not an object
        return "damaged"
    return "pinned" if isinstance(made, dict) and made.get("pinned") is True else "off"


def off_path(root: Path, reports: str = "reports", runs: str = "") -> str:
    """One line naming the runs whose metrics were made off the pinned arithmetic path (their numbers are not
    what a re-run makes, bit for bit), or "" when every one was made on it. Said, not re-run: re-making the
    family takes hours on two cores, and its conclusions do not depend on the path (docs/arithmetic.md)."""
    wanted = {Path(p).stem for p in runs.split(",")} if runs else None
    off = sorted({m.parents[1].name for m in (root / reports).glob("*/metrics/*.json")
                  if m.parents[1].name != "scratch" and (not wanted or m.parents[1].name in wanted)
                  and arithmetic_of(m) == "off"})
    return (f"made off the pinned arithmetic path (docs/arithmetic.md), so another CPU's re-run gives their numbers "
            f"only to about 4 digits: {', '.join(off)}; ./run_all.sh --fresh re-makes a run on it") if off else ""
