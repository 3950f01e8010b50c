"""Train the VAE: data resident on the device, seeded per epoch, resumable, atomic checkpoints.

Every epoch draws its shuffle and its reparameterization noise from a generator seeded by
(seed, epoch), so a run resumed from the checkpoint of epoch k gives the same weights as one
that never stopped (on the CPU).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from .checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, load_state_into, save_checkpoint
from .devices import resolve_device
from .errors import TrainingError
from .losses import original_loss
from .model import build_model

OPTIMIZER_CLASSES = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
SCHEDULER_CLASSES = {
    "steplr": torch.optim.lr_scheduler.StepLR,
    "multisteplr": torch.optim.lr_scheduler.MultiStepLR,
    "cosineannealinglr": torch.optim.lr_scheduler.CosineAnnealingLR,
    "cycliclr": torch.optim.lr_scheduler.CyclicLR,
    "exponentiallr": torch.optim.lr_scheduler.ExponentialLR,
}


def make_optimizer(parameters, cfg: dict, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The params' optimizer; Adam on CUDA uses the fused kernel unless `others` says otherwise.

    (On the CPU the default implementation is kept: it is deterministic and as fast here.)
    """
    name, options = cfg["name"].lower(), dict(cfg.get("others") or {})
    if name == "adam" and device is not None and device.type == "cuda":
        options.setdefault("fused", True)
    return OPTIMIZER_CLASSES[name](parameters, lr=cfg["learning_rate"], **options)


def make_scheduler(optimizer, cfg: dict):
    return SCHEDULER_CLASSES[cfg["name"].lower()](optimizer, **(cfg.get("others") or {}))


def epoch_generator(seed: int, epoch: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): the key to exact resumption."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch * 17 + stream)


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
    model: torch.nn.Module = field(repr=False)

    @property
    def samples_per_second(self) -> float:
        """Over all epochs of the run, resumed ones included."""
        total = self.epochs * self.samples_per_epoch
        return total / self.total_seconds if self.total_seconds > 0 else float("nan")


@torch.no_grad()
def validation_loss(model, images, batch_size: int, alpha: float, kind: str, generator,
                    target_range=None) -> float:
    """The original's validation number: mean over batches of the sampled-z loss."""
    model.eval()
    losses = [batch_loss(model, x, generator, alpha, kind, target_range) for x in images.split(batch_size)]
    return torch.stack(losses).mean().item()


def train(run, train_images: torch.Tensor, val_images: torch.Tensor, *, progress: bool = True,
          stop_after_epoch: int | None = None, on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train (or resume) the run's model. Checkpoints every `plot_epochs` and at the end.

    `stop_after_epoch` ends the call early, as a kill between epochs would; `on_epoch` is
    called with (epoch, history) after each epoch (the loss figure, for instance).
    """
    p, t = run.params, run.params["train"]
    device = resolve_device(p["device"])
    epochs, batch_size, alpha = t["train_epochs"], t["batch_size"], t["alpha"]
    kind, target_range = t["loss"][0].lower(), t["target_range"]
    if len(train_images) < batch_size:
        raise TrainingError(f"train.batch_size: {batch_size} is larger than the {len(train_images)} training images")

    torch.manual_seed(p["seed"])
    model = build_model(p).to(device)
    optimizer = make_optimizer(model.parameters(), t["optim"], device)
    scheduler = make_scheduler(optimizer, t["lr_scheduler"])
    history = {"train": [], "validation": []}
    start, earlier_seconds = 1, 0.0
    resume_from = latest_checkpoint(run.checkpoints, epochs)
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        load_state_into(model, state["model_state_dict"], resume_from)
        optimizer.load_state_dict(state["optimizer_state_dict"])
        scheduler.load_state_dict(state["lr_scheduler_state_dict"])
        history = state["history"]
        start = int(state["epoch"]) + 1
        earlier_seconds = float(state.get("train_seconds", 0.0))

    x_train, x_val = train_images.to(device), val_images.to(device)
    n_batches = len(x_train) // batch_size  # drop_last, as the original loader did
    last = stop_after_epoch if stop_after_epoch is not None else epochs
    saved = resume_from
    started = time.perf_counter()
    bar = tqdm(range(start, min(last, epochs) + 1), initial=start - 1, total=epochs, desc="epochs",
               disable=not progress, leave=True)
    for epoch in bar:
        model.train()
        g = epoch_generator(p["seed"], epoch, device)
        order = torch.randperm(len(x_train), generator=g, device=device)
        losses = torch.empty(n_batches, device=device)  # kept on the device: no sync per step
        for i in range(n_batches):
            x = x_train[order[i * batch_size:(i + 1) * batch_size]]
            try:
                loss = batch_loss(model, x, g, alpha, kind, target_range)
            except RuntimeError as exc:  # BCE refuses NaN outputs before the loss can turn NaN
                losses[i] = float("nan")
                _stop_if_nonfinite(losses[: i + 1], epoch, saved, n_batches, reason=str(exc).splitlines()[0])
                raise
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[i] = loss.detach()
        _stop_if_nonfinite(losses, epoch, saved, n_batches)
        history["train"].append(losses.mean().item())
        val_g = epoch_generator(p["seed"], epoch, device, stream=1)
        history["validation"].append(validation_loss(model, x_val, batch_size, alpha, kind, val_g, target_range))
        scheduler.step()
        bar.set_postfix(train=f"{history['train'][-1]:.5f}", val=f"{history['validation'][-1]:.5f}")
        if epoch % t["plot_epochs"] == 0 or epoch == epochs:
            saved = save_checkpoint({
                "epoch": epoch,
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "history": history,
                "lr_scheduler_state_dict": scheduler.state_dict(),
                "train_seconds": earlier_seconds + time.perf_counter() - started,  # across resumes
            }, checkpoint_path(run.checkpoints, epoch))
            if on_epoch is not None:
                on_epoch(epoch, history)
    bar.close()
    seconds = time.perf_counter() - started
    return TrainResult(history=history, epochs=len(history["train"]), start_epoch=start, seconds=seconds,
                       total_seconds=earlier_seconds + seconds,
                       samples_per_epoch=n_batches * batch_size, device=str(device), checkpoint=saved,
                       model=model.eval())


def squeeze_targets(x: torch.Tensor, target_range) -> torch.Tensor:
    """Map pixels [0, 1] to [lo, hi] (the original's abandoned idea: logit is then finite everywhere)."""
    if target_range is None:
        return x
    lo, hi = target_range
    return lo + (hi - lo) * x


def batch_loss(model, x, generator, alpha: float, kind: str, target_range=None) -> torch.Tensor:
    """The original training objective on one batch, with z sampled from `generator`."""
    out, mean, log_var = model(x, generator)
    return original_loss(out, squeeze_targets(x, target_range), mean, log_var, alpha, kind)[0]


def _stop_if_nonfinite(losses: torch.Tensor, epoch: int, last_checkpoint, n_batches: int | None = None,
                       reason: str = "") -> None:
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    batch = int((~finite).nonzero()[0, 0]) + 1
    kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    why = f" ({reason})" if reason else ""
    raise TrainingError(f"non-finite loss at epoch {epoch}, batch {batch}/{n_batches or len(losses)}{why}: "
                        f"training stopped; {kept}. Lower train.optim.learning_rate or check the data.")
