"""Training speed: the original project's loop against this study's trainer, same params, same device.

The original-style loop is what the original train.py does: torchvision's MNIST dataset with
ToTensor (a PIL image per item), random_split 90/10, a DataLoader with 8 workers, one batch moved
to the device per step, a host sync per step (loss.item()), validation through a DataLoader too.
The project's trainer keeps the data on the device and syncs once per epoch.

    .venv/bin/python bench/train_speed.py --epochs 5 [--device cpu|cuda] [--params params/default.yaml] [--repeats 3]
        [--original-epochs N]

Prints seconds per epoch for each (median over repeats; the first epoch of each run is a warm-up
and is not counted), the whole-run time of the project's trainer (warm-up,
validation and its checkpoints every plot_epochs included), then, last,
`ratio project/original-style: R`. On a GPU, `--epochs 90 --original-epochs 5` times the full
default training without spending 90 epochs on the slow loop.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset, random_split
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # runnable without installing

from inverse_vae.core.data import fetch_mnist  # noqa: E402
from inverse_vae.core.losses import original_loss  # noqa: E402
from inverse_vae.core.model import build_model, resolve_device  # noqa: E402
from inverse_vae.core.training import make_optimizer, make_scheduler, train  # noqa: E402
from inverse_vae.runs.run import open_run  # noqa: E402
from inverse_vae.study.shared import train_val_images  # noqa: E402


def original_style_epochs(run, device, epochs: int, workers: int) -> list[float]:
    """Seconds of each epoch of the original train.py's loop (train + validation)."""
    config, t = run.config, run.config.train
    dataset = datasets.MNIST(str(run.data_root), train=True, download=False, transform=transforms.ToTensor())
    if config.data.train_subset:  # the same images the project's trainer gets
        dataset = Subset(dataset, range(min(config.data.train_subset, len(dataset))))
    n_train = int(len(dataset) * (1.0 - config.data.val_fraction))  # the sizes of data.train_val_split
    train_set, val_set = random_split(dataset, [n_train, len(dataset) - n_train],
                                      generator=torch.Generator().manual_seed(config.seed))
    loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, drop_last=True, num_workers=workers)
    val_loader = DataLoader(val_set, batch_size=t.batch_size, shuffle=False, num_workers=workers)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model.parameters(), t.optim)
    scheduler = make_scheduler(optimizer, t.lr_scheduler)
    kind, alpha = t.reconstruction_loss, t.alpha
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        total = 0.0
        for x, _ in loader:
            x = x.to(device)
            out, mean, log_var = model(x)
            loss = original_loss(out, x, mean, log_var, alpha, kind)[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()  # the original syncs every step
        model.eval()
        with torch.no_grad():
            for x, _ in val_loader:
                x = x.to(device)
                total += original_loss(*_fwd(model, x), alpha=alpha, kind=kind)[0].item()
        scheduler.step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def _fwd(model, x):
    out, mean, log_var = model(x)
    return out, x, mean, log_var


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def project_epochs(run, device, epochs: int) -> tuple[list[float], float]:
    """This study's trainer, a checkpoint after every epoch (when its time is taken): (s per epoch, whole run s).

    The whole-run time is what a run of `epochs` epochs costs after the data is on the device: warm-up,
    validation and checkpoint writes included.
    """
    (x_train, _), (x_val, _) = train_val_images(run, log=lambda s: None)
    stamps = []
    with tempfile.TemporaryDirectory() as tmp:
        config = run.config.replace(device=device.type, train={"train_epochs": epochs, "plot_epochs": 1})
        started = time.perf_counter()
        result = train(dataclasses.replace(run, config=config, dir=Path(tmp)), x_train, x_val, progress=False,
                       on_epoch=lambda epoch, history: stamps.append(time.perf_counter()), say=lambda line: None)
    per_epoch = [b - a for a, b in zip([started, *stamps[:-1]], stamps)]
    return per_epoch, result.seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--original-epochs", type=int, help="epochs of the original-style loop (default: --epochs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the original-style loop")
    args = parser.parse_args(argv)
    original_epochs = args.original_epochs or args.epochs
    if min(args.epochs, original_epochs) < 2:
        parser.error("--epochs and --original-epochs must be at least 2 (the first epoch is a warm-up)")

    run = open_run(args.params, say=lambda line: None)
    fetch_mnist(run.data_root, log=lambda s: None)
    device = resolve_device(args.device)
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"device {device}{gpu}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {run.config.train.batch_size}, {args.epochs} epochs "
          f"({original_epochs} original-style) x {args.repeats} repeats")
    contenders = {"original-style": lambda: (original_style_epochs(run, device, original_epochs, args.workers), None)}
    contenders["project"] = lambda: project_epochs(run, device, args.epochs)
    results, wholes = {name: [] for name in contenders}, {}
    for r in range(args.repeats):
        for name, fn in contenders.items():
            per_epoch, whole = fn()
            results[name].append(statistics.median(per_epoch[1:]))  # the first epoch is a warm-up
            line = f"  repeat {r + 1} {name:<26} {results[name][-1]:.4f} s/epoch"
            if whole is not None:
                wholes.setdefault(name, []).append(whole)
                line += f", whole {args.epochs}-epoch run {whole:.2f} s"
            print(line)
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, m in medians.items():
        whole = f"; whole {args.epochs}-epoch run {statistics.median(wholes[name]):.2f} s" if name in wholes else ""
        print(f"{name:<26} {m:.4f} s/epoch (median of {args.repeats}), 90 epochs ~ {90 * m:.1f} s{whole}")
    print(f"ratio project/original-style: {medians['project'] / medians['original-style']:.3f}")


if __name__ == "__main__":
    main()
