"""What each notebook of the study needs before it runs and what it writes into reports/<run>/.

The runner checks a notebook's needs before starting it (one line naming the notebook to run
first), and each notebook prints its own entry in its first cell, so a reader of an executed
report sees where its inputs came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.checkpoints import fingerprint_changes, load_checkpoint
from ..errors import CheckpointError, StudyError


@dataclass(frozen=True)
class Notebook:
    name: str
    needs_checkpoint: bool  # the run's trained model, test.model_path
    writes: tuple[str, ...]  # relative to the run folder
    shares: tuple[str, ...] = ()  # cache entries it reads or makes (runs.cache)


PLAN = {nb.name: nb for nb in (
    Notebook("01_train", False, ("checkpoints/model_<epoch>.pt", "train_progress/<epoch>_epochs.png",
                                 "figures/loss.png", "metrics/01_train.json")),
    Notebook("02_evaluate", True, ("figures/per_digit_bce.png", "figures/reconstruction.png",
                                   "figures/random_generation.png", "figures/latent_tsne_pca.png",
                                   "metrics/02_evaluate.json"), ("probe", "means_tsne")),
    Notebook("03_invert", True, ("figures/preactivations_prior.png", "figures/tsne_recovered_vs_encoder.png",
                                 "figures/real_inversion_grid.png", "metrics/03_invert.json"),
             ("prior", "probe", "means_tsne")),
    Notebook("04_failure_analysis", True, ("figures/zero_one_maps.png",
                                           "figures/clamp_sweep.png", "figures/atanh_domain.png",
                                           "figures/singular_values.png", "metrics/04_failure_analysis.json"),
             ("prior", "probe")),
    Notebook("05_inverse_methods", True, ("figures/quality_vs_time.png", "figures/methods_grid.png",
                                          "figures/noise_robustness.png", "metrics/05_inverse_methods.json"),
             ("prior", "probe")),
)}

# Not a per-run notebook: it reads every run's metrics and runs once (runs.notebooks.run_summary), into
# <reports_root>/summary/ (its writes are relative to that folder); study_notebooks leaves it out.
SUMMARY = Notebook("99_summary", False, ("99_summary.ipynb", "figures/recovery_by_run.png", "metrics/99_summary.json"))


def entry(name: str) -> Notebook:
    if name not in PLAN:
        raise StudyError(f"notebook {name!r} is not in the study's plan (runs/plan.py); known: {', '.join(PLAN)}")
    return PLAN[name]


def _shown(path: Path, *bases: Path) -> str:
    """`path` relative to the first base that holds it (reports show no machine's absolute paths)."""
    for base in bases:
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def check_needs(name: str, run) -> None:
    """Refuse, in one line, to start a notebook whose inputs are missing or are not the run's model.

    test.model_path must hold the run's final epoch (train.train_epochs) unless test.allow_intermediate,
    and, where the checkpoint records them, the params it was trained with must be the run's. A
    checkpoint that cannot be read is left to the notebook, whose load says what is wrong with it.
    """
    if not entry(name).needs_checkpoint:
        return
    shown = _shown(run.model_file, run.root)
    if not run.model_file.is_file():
        if getattr(run, "scratch", False):
            raise StudyError(f"{name} needs the trained model {shown}, which this scratch run has not made: run "
                             f"notebooks/01_train.ipynb first with reports_root = None, or set reports_root = \"reports\" "
                             f"to use reports/{run.name}/ (its figures and metrics are then rewritten)")
        raise StudyError(f"{name} needs the trained model {shown}: "
                         f"run notebooks/01_train.ipynb first (run_all.sh runs the notebooks in order)")
    try:
        state = load_checkpoint(run.model_file)
    except CheckpointError:
        return
    changed = fingerprint_changes(state, run.config)
    _check_final_epoch(name, shown, state.get("epoch"), run.config, changed is not None)
    if changed:
        raise StudyError(f"{name}: test.model_path {shown} was trained with other params (changed: "
                         f"{', '.join(changed[:6])}): rerun notebooks/01_train.ipynb, or use the params it was trained with")


def _check_final_epoch(name: str, shown: str, epoch, config, ours: bool) -> None:
    """Refuse another epoch than train.train_epochs, unless test.allow_intermediate.

    Spared: a checkpoint without a params fingerprint (`ours` false) past train_epochs, which comes
    from elsewhere (the original's model_90.pt evaluated with the smoke params), and one without an
    epoch (a bare state dict): neither is an unfinished run of these params.
    """
    train_epochs = config.train.train_epochs
    if not isinstance(epoch, int) or epoch == train_epochs or config.test.allow_intermediate:
        return
    if epoch < train_epochs or ours:
        raise StudyError(f"{name}: test.model_path {shown} holds epoch {epoch}, not train.train_epochs "
                         f"({train_epochs}): finish training (notebooks/01_train.ipynb) or point test.model_path "
                         f"at model_{train_epochs}.pt, or set test.allow_intermediate: true to use it anyway")


def describe(name: str, run) -> str:
    """Markdown: what this notebook reads and writes, for its first cell."""
    nb = entry(name)
    needs = [f"the trained model `{_shown(run.model_file, run.dir, run.root)}` (from 01_train)"] if nb.needs_checkpoint \
        else ["MNIST (fetched and MD5-checked if missing)"]
    if nb.shares:
        needs.append("the run's shared " + " and ".join(f"`cache/{s}.npz`" for s in nb.shares)
                     + " (made by the first notebook that needs it)")
    writes = ", ".join(f"`{w}`" for w in nb.writes)
    return f"**Run** `{run.name}` · **reads** {'; '.join(needs)} · **writes** {writes}"
