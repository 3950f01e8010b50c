"""The study's data splits as tensors: 90/10 seeded train/validation of the 60k, and the test set."""
from __future__ import annotations

import torch

from .data import fetch_mnist, load_mnist, train_val_split


def _subset(images, labels, n):
    return (images, labels) if n is None else (images[:n], labels[:n])


def train_val_images(run, log=print):
    """((train images, labels), (validation images, labels)), fetching MNIST if needed."""
    fetch_mnist(run.data_root, log=log)
    data = run.config.data
    images, labels = _subset(*load_mnist(run.data_root, train=True), data.train_subset)
    train_idx, val_idx = train_val_split(len(images), data.val_fraction, run.config.seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def test_images(run, log=print) -> tuple[torch.Tensor, torch.Tensor]:
    fetch_mnist(run.data_root, log=log)
    return _subset(*load_mnist(run.data_root, train=False), run.config.data.test_subset)
