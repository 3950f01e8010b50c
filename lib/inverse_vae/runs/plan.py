"""What each notebook of the study needs before it runs and what it writes into reports/<run>/.

The runner checks a notebook's needs before starting it (one line naming the notebook to run
first), and each notebook prints its own entry in its first cell, so a reader of an executed
report sees where its inputs came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.checkpoints import fingerprint_changes, load_checkpoint
from ..core.training import objective_summary
from ..errors import CheckpointError, StudyError


@dataclass(frozen=True)
class Notebook:
    name: str
    needs_checkpoint: bool  # the run's trained model, test.model_path
    writes: tuple[str, ...]  # relative to the run folder
    shares: tuple[str, ...] = ()  # cache entries it reads or makes (runs.cache)
    trains: bool = False  # it trains the model: its description says which model, on which loss


PLAN = {nb.name: nb for nb in (
    Notebook("01_train", False, ("checkpoints/model_<epoch>.pt", "train_progress/<epoch>_epochs.png",
                                 "figures/loss.png", "metrics/01_train.json"), trains=True),
    Notebook("02_evaluate", True, ("figures/per_digit_bce.png", "figures/per_digit_mse.png", "figures/reconstruction.png",
                                   "figures/random_generation.png", "figures/latent_tsne_pca.png",
                                   "metrics/02_evaluate.json"), ("probe", "means_tsne")),
    Notebook("03_invert", True, ("figures/preactivations_prior.png", "figures/preactivations_encoder_mean.png",
                                 "figures/tsne_recovered_vs_encoder.png",
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

# Files only some models make: the sections of notebooks 02-05 that apply to them (study.applies says
# why the others do not), as functions of the run's config.
def _decoder_has(name: str):
    return lambda config: any(spec.name == name for spec in config.model.architecture.decoder)


def _variational(config) -> bool:
    return config.model.architecture.variational


def _not(condition):
    return lambda config: not condition(config)


def _either(*conditions):
    return lambda config: any(c(config) for c in conditions)


def _both(*conditions):
    return lambda config: all(c(config) for c in conditions)


_sigmoid, _tanh = _decoder_has("Sigmoid"), _decoder_has("Tanh")
WRITTEN_WHEN = {
    "figures/per_digit_bce.png": _sigmoid,
    "figures/per_digit_mse.png": _not(_sigmoid),  # no Sigmoid: no BCE, the errors per digit in MSE
    "figures/random_generation.png": _variational,  # z ~ N(0, I): a VAE's prior, not an autoencoder's
    # the pre-activations that saturate (Tanh, Sigmoid), of the realizable set: prior, or encoded test images
    "figures/preactivations_prior.png": _both(_variational, _either(_sigmoid, _tanh)),
    "figures/preactivations_encoder_mean.png": _both(_not(_variational), _either(_sigmoid, _tanh)),
    "figures/clamp_sweep.png": _either(_sigmoid, _tanh),
    "figures/atanh_domain.png": _tanh,
    "figures/quality_vs_time.png": _sigmoid,  # drawn in BCE
}
SHARED_WHEN = {"prior": _variational}


def writes(name: str, config) -> tuple[str, ...]:
    """What notebook `name` writes for a run of `config`: its plan's files, less those its sections
    that do not apply to this model leave out, with training's folders as the params name them
    (train.model_path, train.progress_path)."""
    folders = {"checkpoints/": f"{config.train.model_path}/", "train_progress/": f"{config.train.progress_path}/"}
    kept = [w for w in entry(name).writes if WRITTEN_WHEN.get(w, lambda c: True)(config)]
    return tuple(next((w.replace(k, v, 1) for k, v in folders.items() if w.startswith(k)), w) for w in kept)


def _shares(name: str, config) -> tuple[str, ...]:
    return tuple(s for s in entry(name).shares if SHARED_WHEN.get(s, lambda c: True)(config))


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
    """Markdown for a notebook's first cell: what it reads and writes, what the run trains (in the
    notebook that trains it), and the run's hypothesis (params `hypothesis`) when the run states one."""
    nb = entry(name)
    needs = [f"the trained model `{_shown(run.model_file, run.dir, run.root)}` (from 01_train)"] if nb.needs_checkpoint \
        else ["MNIST (fetched and MD5-checked if missing)"]
    shares = _shares(name, run.config)
    if shares:
        needs.append("the run's shared " + " and ".join(f"`cache/{s}.npz`" for s in shares)
                     + " (made by the first notebook that needs it)")
    written = ", ".join(f"`{w}`" for w in writes(name, run.config))
    lines = [f"**Run** `{run.name}` · **reads** {'; '.join(needs)} · **writes** {written}"]
    if nb.trains:
        lines.append(f"**Trains** {objective_summary(run.config.train)}.")
    if run.config.hypothesis is not None:
        lines.append(f"**Hypothesis of this run, stated before its results:** {run.config.hypothesis.strip()}")
    return "\n\n".join(lines)
