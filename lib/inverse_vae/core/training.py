"""Train the run's model on losses.original_loss (plus train.preactivation_penalty where set): data resident on
the device, atomic checkpoints. Every epoch draws its shuffle and noise from a generator seeded by (seed, epoch), so
a run resumed from the checkpoint of epoch k gives the weights of one that never stopped (on the CPU)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from .config import Config, Optim, Scheduler, Train, thaw
from .files import set_aside
from .losses import original_loss, past_bound_share, preactivation_penalty
from .model import build_model, resolve_device
from .table import KINDS

_VALIDATION_STREAM = 1  # validation draws its noise from a generator of its own


def _epoch_generator(seed: int, epoch: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): the key to exact resumption."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch * 17 + stream)


def make_optimizer(parameters, optim: Optim, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The config's optimizer; Adam on CUDA uses the fused kernel unless `others` says otherwise."""
    options = thaw(optim.others or {})
    if optim.name == "adam" and device is not None and device.type == "cuda":
        options.setdefault("fused", True)
    return getattr(torch.optim, OPTIMIZERS[optim.name])(parameters, lr=optim.learning_rate, **options)


def make_scheduler(optimizer, scheduler: Scheduler):
    return getattr(torch.optim.lr_scheduler, SCHEDULERS[scheduler.name])(optimizer, **thaw(scheduler.others or {}))


def check_training_options(train: Train) -> None:
    """Build the optimizer and scheduler on a dummy tensor, so bad `others` keywords fail before work starts."""
    key = "optim"
    try:
        optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], train.optim)
        key = "lr_scheduler"
        make_scheduler(optimizer, train.lr_scheduler)
    except (TypeError, ValueError, KeyError) as exc:
        raise ParamsError(f"train.{key}.others: {exc}") from None


@dataclass
class TrainResult:
    history: dict
    epochs: int
    start_epoch: int  # first epoch trained in this call (> 1 when resumed)
    seconds: float  # the epochs of this call
    total_seconds: float  # all epochs, earlier calls included
    samples_per_second: float  # over all epochs
    device: str
    checkpoint: Path | None
    model: torch.nn.Module = field(repr=False)


def _squeeze_targets(x: torch.Tensor, target_range) -> torch.Tensor:
    """Pixels [0, 1] -> [lo, hi] (the original's abandoned idea: logit is then finite everywhere)."""
    if target_range is None:
        return x
    lo, hi = target_range
    return lo + (hi - lo) * x


def _batch_loss(model, x, generator, *, alpha: float, kind: str, target_range=None, penalty=None) -> torch.Tensor:
    """The training objective on one batch, z drawn from `generator`."""
    z, mean, log_var = model.latent(x, generator)
    out, traced = model.decode_traced(z)
    loss = original_loss(out, _squeeze_targets(x, target_range), mean, log_var, alpha, kind)[0]
    return loss if penalty is None else loss + penalty.weight * preactivation_penalty(traced, penalty.bound)


@torch.no_grad()
def _validation_loss(model, images, batch_size: int, generator, **objective) -> torch.Tensor:
    """The original's validation number: the mean over batches of the sampled-z loss."""
    model.eval()
    return torch.stack([_batch_loss(model, x, generator, **objective) for x in images.split(batch_size)]).mean()


@torch.no_grad()
def _preactivation_measures(model, images, batch_size: int, penalty) -> dict[str, float]:
    """The penalty term (weighted, as in the loss) and the share of units past the bound, on encoder means."""
    model.eval()
    sums = torch.zeros(2, device=images.device)
    for x in images.split(batch_size):
        traced = model.decode_traced(model.encode(x)[0])[1]
        sums += len(x) * torch.stack([preactivation_penalty(traced, penalty.bound), past_bound_share(traced, penalty.bound)])
    term, share = (sums / len(images)).tolist()
    return {"preactivation_penalty": penalty.weight * term, "past_bound": share}


def _epoch(model, optimizer, objective, x_train, batch_size: int, g, last_checkpoint, epoch: int) -> float:
    """One epoch of steps in the order drawn from g; stops on a non-finite loss."""
    model.train()
    order = torch.randperm(len(x_train), generator=g, device=x_train.device)
    n_batches = len(x_train) // batch_size  # drop_last, as the original loader did
    losses = torch.empty(n_batches, device=x_train.device)  # on the device: no sync per step
    for i in range(n_batches):
        try:
            loss = _batch_loss(model, x_train[order[i * batch_size:(i + 1) * batch_size]], g, **objective)
        except RuntimeError as exc:  # BCE refuses NaN outputs before the loss can turn NaN
            raise _nonfinite(epoch, i, n_batches, last_checkpoint, str(exc).splitlines()[0]) from None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[i] = loss.detach()
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        raise _nonfinite(epoch, int((~finite).nonzero()[0, 0]), n_batches, last_checkpoint)
    return losses.mean().item()


def train(run, train_images: torch.Tensor, val_images: torch.Tensor, *, progress: bool = True,
          stop_after_epoch: int | None = None, on_epoch: Callable[[int, dict], None] | None = None,
          say=print) -> TrainResult:
    """Train (or resume) the run's model; a checkpoint every plot_epochs and at the end. `stop_after_epoch` ends
    the call early, as a kill between epochs would; `on_epoch(epoch, history)` runs after each checkpoint."""
    config, t = run.config, run.config.train
    device = resolve_device(config.device, say)
    if len(train_images) < t.batch_size:
        raise TrainingError(f"train.batch_size: {t.batch_size} is larger than the {len(train_images)} training images")
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model.parameters(), t.optim, device)
    scheduler = make_scheduler(optimizer, t.lr_scheduler)
    resume_from, state = _resumable_checkpoint(run, config, say)
    history, start, earlier = _resume(resume_from, state, model, optimizer, scheduler, t.preactivation_penalty)
    x_train, x_val = train_images.to(device), val_images.to(device)
    objective = dict(alpha=t.alpha, kind=t.reconstruction_loss, target_range=t.target_range,
                     penalty=t.preactivation_penalty)
    last = min(stop_after_epoch or t.train_epochs, t.train_epochs)
    saved, started = resume_from, time.perf_counter()
    bar = progress_display(range(start, last + 1), initial=start - 1, total=t.train_epochs, desc="epochs", enabled=progress)
    for epoch in bar:
        g = _epoch_generator(config.seed, epoch, x_train.device)
        history["train"].append(_epoch(model, optimizer, objective, x_train, t.batch_size, g, saved, epoch))
        g_val = _epoch_generator(config.seed, epoch, x_train.device, _VALIDATION_STREAM)
        history["validation"].append(_validation_loss(model, x_val, t.batch_size, g_val, **objective).item())
        if t.preactivation_penalty is not None:
            for key, value in _preactivation_measures(model, x_val, t.batch_size, t.preactivation_penalty).items():
                history[key].append(value)
        scheduler.step()
        bar.set_postfix(train=f"{history['train'][-1]:.5f}", val=f"{history['validation'][-1]:.5f}")
        if epoch % t.plot_epochs == 0 or epoch == t.train_epochs:
            saved = save_checkpoint({
                "epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "history": history, "lr_scheduler_state_dict": scheduler.state_dict(),
                "train_seconds": earlier + time.perf_counter() - started,  # across resumes
                "params_fingerprint": params_fingerprint(config),  # what a resume must match
            }, checkpoint_path(run.checkpoints, epoch))
            if on_epoch is not None:
                on_epoch(epoch, history)
    bar.close()
    seconds = time.perf_counter() - started
    total, epochs = earlier + seconds, len(history["train"])
    samples = epochs * (len(x_train) // t.batch_size) * t.batch_size
    return TrainResult(history, epochs, start, seconds, total, samples / total if total > 0 else float("nan"),
                       str(device), saved, model.eval())


def _resumable_checkpoint(run, config: Config, say) -> tuple[Path | None, dict | None]:
    """The newest checkpoint (up to train_epochs) that loads, with its state, passing damaged ones over; (None, None)
    to start afresh, also when they were trained with other params (then set aside into reports/.old/)."""
    for path in checkpoints_newest_first(run.checkpoints, config.train.train_epochs):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            say(f"note: {exc}; passing it over for the checkpoint before it")
            continue
        changed = fingerprint_changes(state, config)
        if changed:
            moved = set_aside(run.checkpoints, run.dir.parent / ".old", f"{run.name}-checkpoints")
            say(f"note: the checkpoints in {run.checkpoints.name}/ were trained with other params (changed: "
                f"{', '.join(changed[:4])}); set aside in {moved.parent.name}/{moved.name}/, training afresh")
            return None, None
        if checkpoint_layout(state) == "compact" and int(state["epoch"]) < config.train.train_epochs:
            raise TrainingError(f"{path}: a compact checkpoint (no optimizer state) of epoch {state['epoch']}: training "
                                f"cannot continue from it to train.train_epochs {config.train.train_epochs}")
        if checkpoint_layout(state) == "weights":
            say(f"note: {path}: cannot resume from it, it lacks {', '.join(k for k in FULL_KEYS if k not in state)}")
            continue
        if changed is None and int(state["epoch"]) < config.train.train_epochs:
            say(f"note: {path} has no params fingerprint (the original train.py's?); resuming it as these params'")
        return path, state
    return None, None


def _resume(checkpoint, state, model, optimizer, scheduler, penalty) -> tuple[dict, int, float]:
    """(history, first epoch to train, seconds so far), the checkpoint's state loaded into the training objects."""
    if checkpoint is None:
        extra = ("preactivation_penalty", "past_bound") if penalty is not None else ()
        return {key: [] for key in ("train", "validation", *extra)}, 1, 0.0
    load_state_into(model, state["model_state_dict"], checkpoint)
    if checkpoint_layout(state) == "full":  # a compact one is final: no step will need them
        saved = state["optimizer_state_dict"]  # its implementation flags (CUDA's fused) stay the optimizer's own
        optimizer.load_state_dict(dict(saved, param_groups=[
            dict(old, **{k: new[k] for k in ("fused", "capturable", "foreach") if k in new})
            for old, new in zip(saved["param_groups"], optimizer.param_groups)]))
        scheduler.load_state_dict(state["lr_scheduler_state_dict"])
    return state["history"], int(state["epoch"]) + 1, float(state.get("train_seconds", 0.0))


def _nonfinite(epoch: int, batch: int, n_batches: int, last_checkpoint, reason: str = "") -> TrainingError:
    kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    return TrainingError(f"non-finite loss at epoch {epoch}, batch {batch + 1}/{n_batches}{f' ({reason})' if reason else ''}: "
                         f"training stopped; {kept}. Lower train.optim.learning_rate or check the data.")


def _penalized(decoder) -> str:
    """The decoder's layers the pre-activation penalty acts on (table: amplifies), by type in order of appearance:
    "T inputs (s = |a|) and S input (s = a, its bright side)"."""
    kinds = {cls.__name__: kind for cls, kind in KINDS.items() if kind.amplifies is not None}
    counts = Counter(spec.name for spec in decoder if spec.name in kinds)
    side = {0: "|a|", 1: "a, its bright side", -1: "-a, its dark side"}
    return " and ".join(f"{name} input{'s' * (n > 1)} (s = {side[kinds[name].amplifies]})" for name, n in counts.items())


def objective_summary(train: Train, decoder=()) -> str:
    """What the run trains, on which loss, in one sentence for the training notebook's reader (decoder: its
    layer specs, which the pre-activation penalty names)."""
    rec = {"bceloss": "BCE", "mseloss": "squared error"}[train.reconstruction_loss]
    parts = [f"a VAE on {rec} averaged over pixels plus alpha {train.alpha:g} times the KL averaged over batch and latent "
             f"dimensions" if train.variational else f"a deterministic autoencoder (no KL term) on {rec} averaged over pixels"]
    if train.target_range is not None:
        lo, hi = train.target_range
        parts.append(f"towards targets squeezed into [{lo:g}, {hi:g}] (train.target_range)")
    if train.preactivation_penalty is not None:
        p = train.preactivation_penalty
        parts.append(f"plus the pre-activation penalty {p.weight:g} * mean(relu(s - {p.bound:g})^2) over the decoder's "
                     f"{_penalized(decoder)} (train.preactivation_penalty)")
    return ", ".join(parts)
