"""Train the model (the VAE, or the deterministic autoencoder): data resident on the device, seeded
per epoch, resumable, atomic checkpoints.

The objective is core.losses.original_loss: the reconstruction loss plus alpha times the KL term
for a VAE, the reconstruction loss alone for a deterministic autoencoder (train.loss of one name),
plus, when the run sets train.preactivation_penalty, weight * mean(relu(side - bound)^2) over the
decoder's Tanh and Sigmoid inputs a (side = |a| for Tanh, a for Sigmoid: losses.amplifying_side);
history then also gets that term and the share past the bound, on the validation images' encoder
means, per epoch.
Every epoch draws its shuffle and its reparameterization noise from a generator seeded by
(seed, epoch), so a run resumed from the checkpoint of epoch k gives the same weights as one
that never stopped (on the CPU). On CUDA the training step can be captured once as a CUDA
graph and replayed (`train.cuda_graph`, see graphed.py); it draws the same random numbers.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from ..constants import OPTIMIZERS, SCHEDULERS
from ..errors import CheckpointError, ParamsError, TrainingError
from ..progress import progress as progress_display
from .checkpoints import (
    FULL_KEYS,
    checkpoint_layout,
    checkpoint_path,
    checkpoints_newest_first,
    fingerprint_changes,
    load_checkpoint,
    load_state_into,
    params_fingerprint,
    save_checkpoint,
)
from .config import Config, OptimConfig, SchedulerConfig, TrainConfig, thaw
from .devices import resolve_device_said
from .losses import original_loss, past_bound_share, preactivation_penalty
from .model import build_model
from .steps import EagerSteps, GraphedSteps, StepFailed

# The params' names -> torch classes, from the one table the config validates the names against.
OPTIMIZER_CLASSES = {name: getattr(torch.optim, cls) for name, cls in OPTIMIZERS.items()}
SCHEDULER_CLASSES = {name: getattr(torch.optim.lr_scheduler, cls) for name, cls in SCHEDULERS.items()}


# How an optimizer runs rather than what it computes: a checkpoint's values for these never
# override the resuming optimizer's (a CUDA run's fused=True must not follow it to the CPU).
IMPLEMENTATION_FLAGS = ("fused", "capturable", "foreach", "differentiable")


def make_optimizer(parameters, optim: OptimConfig, device: torch.device | None = None,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The config's optimizer; Adam on CUDA uses the fused kernel unless `others` says otherwise.

    (On the CPU the default implementation is kept: it is deterministic and as fast here.)
    `capturable` makes Adam safe to capture in a CUDA graph (its step counter stays on the device).
    """
    options = thaw(optim.others or {})
    if optim.name == "adam" and device is not None and device.type == "cuda":
        options.setdefault("fused", True)
    if capturable:
        options["capturable"] = True
    return OPTIMIZER_CLASSES[optim.name](parameters, lr=optim.learning_rate, **options)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """optimizer.load_state_dict(state), keeping the optimizer's own IMPLEMENTATION_FLAGS."""
    state = dict(state, param_groups=[
        dict(saved, **{k: group[k] for k in IMPLEMENTATION_FLAGS if k in group})
        for saved, group in zip(state["param_groups"], optimizer.param_groups)])
    optimizer.load_state_dict(state)


def make_scheduler(optimizer, scheduler: SchedulerConfig):
    return SCHEDULER_CLASSES[scheduler.name](optimizer, **thaw(scheduler.others or {}))


def check_training_options(train: TrainConfig) -> None:
    """Build the optimizer and scheduler on a dummy tensor, so bad `others` keywords fail before work starts."""
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = make_optimizer(dummy, train.optim)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"train.optim.others: {exc}") from None
    try:
        make_scheduler(optimizer, train.lr_scheduler)
    except (TypeError, ValueError, KeyError) as exc:
        raise ParamsError(f"train.lr_scheduler.others: {exc}") from None


def use_cuda_graph(mode: str, device: torch.device, optimizer_name: str) -> bool:
    """train.cuda_graph: 'auto' captures on CUDA with Adam, 'on' insists, 'off' never captures."""
    supported = device.type == "cuda" and optimizer_name.lower() == "adam"
    if mode == "on" and not supported:
        raise TrainingError(f"train.cuda_graph: 'on' needs a CUDA device and the adam optimizer, but this run has "
                            f"device {device.type} and optimizer {optimizer_name}; use auto or off")
    return mode != "off" and supported


@dataclass
class TrainResult:
    history: dict
    epochs: int
    start_epoch: int  # first epoch trained in this call (> 1 when resumed)
    seconds: float  # wall time of the epochs trained in this call
    total_seconds: float  # wall time of all epochs, earlier (resumed-from) calls included
    samples_per_epoch: int
    device: str
    checkpoint: Path | None
    epoch_seconds: list[float]  # wall time of each epoch trained in this call (checkpoint writes included)
    cuda_graph: bool  # whether the steps were replayed from a CUDA graph
    model: torch.nn.Module = field(repr=False)

    @property
    def samples_per_second(self) -> float:
        """Over all epochs of the run, resumed ones included."""
        total = self.epochs * self.samples_per_epoch
        return total / self.total_seconds if self.total_seconds > 0 else float("nan")


@torch.no_grad()
def validation_loss(model, images, batch_size: int, generator, **objective) -> torch.Tensor:
    """The original's validation number: mean over batches of the sampled-z loss (0-dim, no sync)."""
    model.eval()
    return torch.stack([batch_loss(model, x, generator, **objective) for x in images.split(batch_size)]).mean()


@torch.no_grad()
def preactivation_measures(model, images, batch_size: int, penalty) -> dict[str, float]:
    """The penalty term (weighted, as the loss adds it) and the share of units past the bound, over the
    images decoded from their encoder means (no noise: the decoder the study inverts, on typical z)."""
    model.eval()
    sums = torch.zeros(2, device=images.device)
    for x in images.split(batch_size):  # every image has as many units: means weighted by batch size
        traced = model.decode_traced(model.encode(x)[0])[1]
        sums += len(x) * torch.stack([preactivation_penalty(traced, penalty["bound"]),
                                      past_bound_share(traced, penalty["bound"])])
    term, share = (sums / len(images)).tolist()
    return {"preactivation_penalty": penalty["weight"] * term, "past_bound": share}


RECONSTRUCTION_NAMES = {"bceloss": "BCE", "mseloss": "squared error"}


def objective_summary(train: TrainConfig) -> str:
    """What the run trains and on which loss, in one sentence for the training notebook's reader."""
    rec = RECONSTRUCTION_NAMES[train.reconstruction_loss]
    parts = [f"a VAE on {rec} averaged over pixels plus alpha {train.alpha:g} times the KL averaged over batch and "
             f"latent dimensions" if train.variational else
             f"a deterministic autoencoder (no KL term) on {rec} averaged over pixels"]
    if train.target_range is not None:
        lo, hi = train.target_range
        parts.append(f"towards targets squeezed into [{lo:g}, {hi:g}] (pixel x becomes {lo:g} + {hi - lo:g} x in "
                     f"the loss; train.target_range)")
    penalty = train.preactivation_penalty
    if penalty is not None:
        bound, weight = penalty["bound"], penalty["weight"]
        parts.append(f"plus the pre-activation penalty (train.preactivation_penalty) {weight:g} * mean(relu(s - "
                     f"{bound:g})^2) over the inputs a of the decoder's Tanh layers (s = |a|) and Sigmoid layer (s = a: "
                     f"its bright side only, where logit amplifies float32 rounding), which keeps s near or below "
                     f"{bound:g}; the history records the term and the share of units past {bound:g} per epoch")
    return ", ".join(parts)


def train(run, train_images: torch.Tensor, val_images: torch.Tensor, *, progress: bool = True,
          stop_after_epoch: int | None = None, on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train (or resume) the run's model. Checkpoints every `plot_epochs` and at the end.

    `stop_after_epoch` ends the call early, as a kill between epochs would; `on_epoch` is
    called with (epoch, history) after each epoch (the loss figure, for instance).
    """
    config, t = run.config, run.config.train
    device = resolve_device_said(config.device)
    if len(train_images) < t.batch_size:
        raise TrainingError(f"train.batch_size: {t.batch_size} is larger than the {len(train_images)} training images")

    graphed = use_cuda_graph(t.cuda_graph, device, t.optim.name)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model.parameters(), t.optim, device, capturable=graphed)
    scheduler = make_scheduler(optimizer, t.lr_scheduler)
    resume_from, state = _resumable_checkpoint(run.checkpoints, config)
    history, start, earlier_seconds = _resume(resume_from, state, model, optimizer, scheduler,
                                              _empty_history(t.preactivation_penalty))

    x_train, x_val = train_images.to(device), val_images.to(device)
    objective = dict(alpha=t.alpha, kind=t.reconstruction_loss, target_range=t.target_range,
                     penalty=t.preactivation_penalty)
    steps = (GraphedSteps if graphed else EagerSteps)(
        optimizer, partial(batch_loss, model, **objective), x_train, t.batch_size,
        partial(validation_loss, model, x_val, t.batch_size, **objective))
    last = stop_after_epoch if stop_after_epoch is not None else t.train_epochs
    saved = resume_from
    started = time.perf_counter()
    epoch_seconds = []
    bar = progress_display(range(start, min(last, t.train_epochs) + 1), initial=start - 1, total=t.train_epochs,
                           desc="epochs", enabled=progress)
    for epoch in bar:
        _train_epoch(steps, model, x_train, config.seed, epoch, history, saved)
        if t.preactivation_penalty is not None:
            for key, value in preactivation_measures(model, x_val, t.batch_size, t.preactivation_penalty).items():
                history[key].append(value)
        scheduler.step()
        bar.set_postfix(train=f"{history['train'][-1]:.5f}", val=f"{history['validation'][-1]:.5f}")
        if epoch % t.plot_epochs == 0 or epoch == t.train_epochs:
            saved = save_checkpoint({
                "epoch": epoch,
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "history": history,
                "lr_scheduler_state_dict": scheduler.state_dict(),
                "train_seconds": earlier_seconds + time.perf_counter() - started,  # across resumes
                "params_fingerprint": params_fingerprint(config),  # what a resume must match
            }, checkpoint_path(run.checkpoints, epoch))
            if on_epoch is not None:
                on_epoch(epoch, history)
        epoch_seconds.append(time.perf_counter() - started - sum(epoch_seconds))
    bar.close()
    seconds = time.perf_counter() - started
    return TrainResult(history=history, epochs=len(history["train"]), start_epoch=start, seconds=seconds,
                       total_seconds=earlier_seconds + seconds,
                       samples_per_epoch=steps.n_batches * t.batch_size, device=str(device), checkpoint=saved,
                       epoch_seconds=epoch_seconds, cuda_graph=graphed, model=model.eval())


# What resuming reads from a checkpoint: the original (full) layout. A compact checkpoint (weights and
# history) ends training at its epoch; a bare state dict cannot be resumed.
RESUME_KEYS = FULL_KEYS


def _resumable_checkpoint(folder: Path, config: Config) -> tuple[Path | None, dict | None]:
    """The newest checkpoint (up to train_epochs) that loads, with its state; (None, None) to start fresh.

    A damaged one (unreadable, digest mismatch, non-finite weights) is passed over with a warning for
    the one before it; one trained with other params stops training (TrainingError naming the keys).
    """
    for path in checkpoints_newest_first(folder, config.train.train_epochs):
        try:
            state = load_checkpoint(path)
            _check_resumable(path, state, config.train.train_epochs)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; passing it over for the checkpoint before it (none left: training starts "
                          f"afresh)", stacklevel=3)
            continue
        _check_same_params(path, state, config)
        return path, state
    return None, None


def _check_resumable(path: Path, state: dict, train_epochs: int) -> None:
    """A full checkpoint, or a compact one of the final epoch (nothing left to train): CheckpointError
    (passed over) for one that lacks what resuming needs, TrainingError for a compact one before the end."""
    layout = checkpoint_layout(state)
    if layout == "compact" and int(state["epoch"]) < train_epochs:
        raise TrainingError(f"{path}: a compact checkpoint (weights and history, no optimizer state) of epoch "
                            f"{state['epoch']}: training cannot continue from it to train.train_epochs {train_epochs}; "
                            f"set train_epochs to {state['epoch']}, or move {path.parent} aside to train from scratch")
    if layout == "weights":
        missing = [k for k in RESUME_KEYS if k not in state]
        raise CheckpointError(f"{path}: cannot resume from it, it lacks {', '.join(missing)}")


def _check_same_params(path: Path, state: dict, config: Config) -> None:
    """Refuse to resume weights trained with other params; warn when the checkpoint cannot tell."""
    changed = fingerprint_changes(state, config)
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise TrainingError(f"{path}: trained with other params (changed: {shown}), so training cannot resume "
                            f"from it; to start fresh move {path.parent} aside, or use a new run name "
                            f"(a copy of the params file under a new name)")
    if changed is None and int(state["epoch"]) < config.train.train_epochs:
        warnings.warn(f"{path}: has no params fingerprint (written by the original train.py or an older "
                      f"version of this study); resuming it as if these params had trained it", stacklevel=4)


def _empty_history(penalty) -> dict[str, list]:
    """The per-epoch lists a run records: the two losses, and with a penalty its term and the share past its bound."""
    extra = ("preactivation_penalty", "past_bound") if penalty is not None else ()
    return {key: [] for key in ("train", "validation", *extra)}


def _resume(checkpoint: Path | None, state: dict | None, model, optimizer, scheduler,
            fresh_history: dict) -> tuple[dict, int, float]:
    """Load the checkpoint's state (if any) into the training objects: (history, first epoch to train, seconds so far)."""
    if checkpoint is None:
        return fresh_history, 1, 0.0
    load_state_into(model, state["model_state_dict"], checkpoint)
    if checkpoint_layout(state) == "full":  # a compact one is final: no step will need them
        load_optimizer_state(optimizer, state["optimizer_state_dict"])
        scheduler.load_state_dict(state["lr_scheduler_state_dict"])
    return state["history"], int(state["epoch"]) + 1, float(state.get("train_seconds", 0.0))


def _train_epoch(steps, model, x_train, seed: int, epoch: int, history: dict, last_checkpoint) -> None:
    """One epoch of steps and its validation, appended to `history`; stops on a non-finite loss."""
    model.train()
    g = steps.generator(seed, epoch)
    order = torch.randperm(len(x_train), generator=g, device=x_train.device)
    try:
        losses = steps.run_epoch(order, g)
    except StepFailed as exc:
        raise _nonfinite_error(epoch, exc.batch, steps.n_batches, last_checkpoint, exc.reason) from None
    _stop_if_nonfinite(losses, epoch, last_checkpoint, steps.n_batches)
    history["train"].append(losses.mean().item())
    history["validation"].append(steps.validate(seed, epoch))


def squeeze_targets(x: torch.Tensor, target_range) -> torch.Tensor:
    """Map pixels [0, 1] to [lo, hi] (the original's abandoned idea: logit is then finite everywhere)."""
    if target_range is None:
        return x
    lo, hi = target_range
    return lo + (hi - lo) * x


def batch_loss(model, x, generator, *, alpha: float, kind: str, target_range=None, penalty=None) -> torch.Tensor:
    """The training objective on one batch, with z sampled from `generator`: the original loss, plus the
    pre-activation penalty when `penalty` ({bound, weight}, train.preactivation_penalty) is given."""
    z, mean, log_var = model.latent(x, generator)
    out, preactivations = model.decode_traced(z)
    loss = original_loss(out, squeeze_targets(x, target_range), mean, log_var, alpha, kind)[0]
    if penalty is None:
        return loss
    return loss + penalty["weight"] * preactivation_penalty(preactivations, penalty["bound"])


def _stop_if_nonfinite(losses: torch.Tensor, epoch: int, last_checkpoint, n_batches: int) -> None:
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        raise _nonfinite_error(epoch, int((~finite).nonzero()[0, 0]), n_batches, last_checkpoint)


def _nonfinite_error(epoch: int, batch: int, n_batches: int, last_checkpoint, reason: str = "") -> TrainingError:
    kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    why = f" ({reason})" if reason else ""
    return TrainingError(f"non-finite loss at epoch {epoch}, batch {batch + 1}/{n_batches}{why}: "
                         f"training stopped; {kept}. Lower train.optim.learning_rate or check the data.")
