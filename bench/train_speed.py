"""Training speed: the original project's loop against this study's trainer, same params, same device.

The original-style loop is what the original train.py does: torchvision's MNIST dataset with
ToTensor (a PIL image per item), random_split 90/10, a DataLoader with 8 workers, one batch moved
to the device per step, a host sync per step (loss.item()), validation through a DataLoader too.
The project's trainer keeps the data on the device and syncs once per epoch.

    .venv/bin/python bench/train_speed.py --epochs 5 [--device cpu|cuda] [--params params/default.yaml] [--repeats 3]

Prints seconds per epoch for each (median over repeats; the first epoch of each run is a warm-up
and is not counted), then, last, `ratio project/original-style: R`.
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
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # runnable without installing

from inverse_vae.data import fetch_mnist  # noqa: E402
from inverse_vae.devices import resolve_device  # noqa: E402
from inverse_vae.losses import original_loss  # noqa: E402
from inverse_vae.model import build_model  # noqa: E402
from inverse_vae.paths import open_run  # noqa: E402
from inverse_vae.splits import train_val_images  # noqa: E402
from inverse_vae.training import make_optimizer, make_scheduler, train  # noqa: E402


def original_style_epochs(run, device, epochs: int, workers: int) -> list[float]:
    """Seconds of each epoch of the original train.py's loop (train + validation)."""
    p, t = run.params, run.params["train"]
    dataset = datasets.MNIST(str(run.data_root), train=True, download=False, transform=transforms.ToTensor())
    train_set, val_set = random_split(dataset, [int(len(dataset) * 0.9), len(dataset) - int(len(dataset) * 0.9)],
                                      generator=torch.Generator().manual_seed(p["seed"]))
    loader = DataLoader(train_set, batch_size=t["batch_size"], shuffle=True, drop_last=True, num_workers=workers)
    val_loader = DataLoader(val_set, batch_size=t["batch_size"], shuffle=False, num_workers=workers)
    torch.manual_seed(p["seed"])
    model = build_model(p).to(device)
    optimizer = make_optimizer(model.parameters(), t["optim"])
    scheduler = make_scheduler(optimizer, t["lr_scheduler"])
    kind, alpha = t["loss"][0].lower(), t["alpha"]
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


def project_epochs(run, device, epochs: int) -> list[float]:
    """Seconds of each epoch of this study's trainer (train + validation), via its on_epoch hook."""
    (x_train, _), (x_val, _) = train_val_images(run, log=lambda s: None)
    stamps = [time.perf_counter()]

    def stamp(epoch, history):
        _sync(device)
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        params = dict(run.params, device=str(device))
        params["train"] = dict(params["train"], train_epochs=epochs, plot_epochs=1)
        bench_run = dataclasses.replace(run, params=params, dir=Path(tmp))
        stamps[0] = time.perf_counter()
        train(bench_run, x_train, x_val, progress=False, on_epoch=stamp)
    # plot_epochs=1 writes a checkpoint each epoch: an upper bound on the project's real cost.
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the original-style loop")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is a warm-up)")

    run = open_run(args.params)
    fetch_mnist(run.data_root, log=lambda s: None)
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {run.params['train']['batch_size']}, {args.epochs} epochs x {args.repeats} repeats")
    results = {"original-style": [], "project": []}
    for r in range(args.repeats):
        for name, fn in (("original-style", lambda: original_style_epochs(run, device, args.epochs, args.workers)),
                         ("project", lambda: project_epochs(run, device, args.epochs))):
            per_epoch = fn()[1:]  # drop the warm-up epoch
            results[name].append(statistics.median(per_epoch))
            print(f"  repeat {r + 1} {name:<15} {statistics.median(per_epoch):.3f} s/epoch")
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, m in medians.items():
        print(f"{name:<15} {m:.3f} s/epoch (median of {args.repeats}), 90 epochs ~ {90 * m:.0f} s")
    print(f"ratio project/original-style: {medians['project'] / medians['original-style']:.3f}")


if __name__ == "__main__":
    main()
