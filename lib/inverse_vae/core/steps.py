"""How one epoch of training steps runs: eagerly, or replayed from a CUDA graph.

Both draw the same random numbers: the shuffle and the noise of epoch e come from a generator
seeded by (seed, e), so a resumed run repeats the steps it would have taken.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    return seed * 1_000_003 + epoch * 17 + stream


def epoch_generator(seed: int, epoch: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): the key to exact resumption."""
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch, stream))


class StepFailed(RuntimeError):
    """A training step raised (BCE refuses NaN outputs before the loss can turn NaN)."""

    def __init__(self, batch: int, reason: str):
        super().__init__(reason)
        self.batch, self.reason = batch, reason


VALIDATION_STREAM = 1  # validation draws its noise from its own generator: stream 1 of the epoch


class EagerSteps:
    """One epoch of training steps, one batch after another, then the validation loss.

    loss_fn(x, generator) is the scalar loss of batch x, its noise drawn from generator;
    val_fn(generator) the 0-dim validation loss. Losses stay on the device: no sync per step.
    """

    def __init__(self, optimizer, loss_fn: Callable, x_train: torch.Tensor, batch_size: int, val_fn: Callable):
        self.optimizer, self.loss_fn, self.val_fn = optimizer, loss_fn, val_fn
        self.x_train, self.batch_size = x_train, batch_size
        self.n_batches = len(x_train) // batch_size  # drop_last, as the original loader did

    def generator(self, seed: int, epoch: int) -> torch.Generator:
        return epoch_generator(seed, epoch, self.x_train.device)

    def validate(self, seed: int, epoch: int) -> float:
        return self.val_fn(epoch_generator(seed, epoch, self.x_train.device, VALIDATION_STREAM)).item()

    def run_epoch(self, order: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One step per batch of `order` (a permutation of the training rows); the batches' losses."""
        return self._eager_steps(order, g, torch.empty(self.n_batches, device=self.x_train.device), self.n_batches)

    def _eager_steps(self, order, g, losses: torch.Tensor, stop: int) -> torch.Tensor:
        """Steps 0..stop-1 of the epoch, each loss written into `losses` on the device."""
        b = self.batch_size
        for i in range(stop):
            x = self.x_train[order[i * b:(i + 1) * b]]
            try:
                loss = self.loss_fn(x, g)
            except RuntimeError as exc:
                losses[i] = float("nan")
                raise StepFailed(i, str(exc).splitlines()[0]) from exc
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses[i] = loss.detach()
        return losses


class GraphedSteps(EagerSteps):
    """EagerSteps' step, and its validation, captured once as CUDA graphs, then replayed.

    Same arithmetic and same random numbers as the eager steps: batch i takes the same rows of
    the same permutation, and the noise comes from one generator registered with the graph and
    reseeded each epoch, so replay i draws at the Philox offset where eager step i would. The
    first `warmup` steps run eagerly on a side stream (the allocator, cuBLAS and Adam's state must
    exist before capture). The graph reads the learning rate from a device tensor refreshed every
    epoch, so the scheduler's changes reach it; the param groups keep plain floats otherwise, so
    the scheduler and the checkpoints see what the eager path gives them. The first validation
    runs eagerly too, then is captured whole with its own registered generator.
    """

    warmup = 3

    def __init__(self, *args):
        super().__init__(*args)
        device = self.x_train.device
        self._generator = torch.Generator(device=device)
        self._order = torch.zeros(self.n_batches, self.batch_size, dtype=torch.long, device=device)
        self._step = torch.zeros(1, dtype=torch.long, device=device)
        self._losses = torch.empty(self.n_batches, device=device)
        self._lr = [torch.tensor(float(group["lr"]), device=device) for group in self.optimizer.param_groups]
        self._graph = None
        self._val_generator = torch.Generator(device=device)
        self._val_graph, self._val_loss = None, None

    def generator(self, seed: int, epoch: int) -> torch.Generator:
        return self._generator.manual_seed(epoch_seed(seed, epoch))

    def validate(self, seed: int, epoch: int) -> float:
        g = self._val_generator.manual_seed(epoch_seed(seed, epoch, VALIDATION_STREAM))
        if self._val_graph is None:
            loss = self.val_fn(g).item()  # eagerly, the warm-up of the capture below
            self._val_graph = torch.cuda.CUDAGraph()
            self._val_graph.register_generator_state(g)
            with torch.cuda.graph(self._val_graph):
                self._val_loss = self.val_fn(g)
            return loss
        self._val_graph.replay()
        return self._val_loss.item()

    def run_epoch(self, order: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if g is not self._generator:
            raise ValueError("GraphedSteps draws from its own generator: pass the one generator() returned")
        start = 0
        self._order.copy_(order[: self._order.numel()].view_as(self._order))
        for lr, group in zip(self._lr, self.optimizer.param_groups):
            lr.fill_(group["lr"])
        if self._graph is None:
            start = min(self.warmup, self.n_batches)
            side = torch.cuda.Stream(self.x_train.device)
            side.wait_stream(torch.cuda.current_stream(self.x_train.device))
            with torch.cuda.stream(side):
                self._eager_steps(order, g, self._losses, start)
            torch.cuda.current_stream(self.x_train.device).wait_stream(side)
            self._graph = self._capture()
        self._step.fill_(start)
        for _ in range(start, self.n_batches):
            self._graph.replay()
        return self._losses

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self._generator)
        groups = self.optimizer.param_groups
        floats = [group["lr"] for group in groups]
        self.optimizer.zero_grad(set_to_none=True)  # backward then writes fresh grads in the graph's pool
        try:
            for group, lr in zip(groups, self._lr):
                group["lr"] = lr
            with torch.cuda.graph(graph):
                rows = self._order.index_select(0, self._step).view(-1)
                loss = self.loss_fn(self.x_train.index_select(0, rows), self._generator)
                loss.backward()
                self.optimizer.step()
                self._losses.index_copy_(0, self._step, loss.detach().view(1))
                self._step.add_(1)
        finally:
            for group, value in zip(groups, floats):
                group["lr"] = value
        return graph
