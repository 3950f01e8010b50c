"""What an inversion call returns, and the one clock every method runs under. History entries are
{"iteration", "seconds", "objective", "bce"}: the method's own objective and the per-image BCE every
method shares, averaged over images (each at its best restart so far); seconds exclude the time spent
computing them, info["wall_seconds"] does not."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .plain import bce

__all__ = ["MethodResult", "Recorder", "best_restart", "record_bce", "timed"]


@dataclass
class MethodResult:
    """What one inversion call found, and what it cost."""

    z: torch.Tensor  # (N, d) latents found
    seconds: float  # time of the whole call (history bookkeeping excluded)
    iterations: int  # outer iterations / steps actually run (0 for closed form)
    history: list[dict] = field(default_factory=list)  # {"iteration", "seconds", "objective", "bce"}
    info: dict = field(default_factory=dict)  # per-image final objective, restarts, ...


class Recorder:
    """Clock and history of one call; per-sample values come as (restarts * N,), each image reported at
    its restart with the lowest objective."""

    def __init__(self, device: torch.device, restarts: int = 1):
        self.device, self.restarts = device, restarts
        self.history: list[dict] = []
        self.excluded = 0.0
        self.muted = False
        self._sync()
        self.start = time.perf_counter()

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA is asynchronous: wait before reading the clock

    def elapsed(self) -> float:
        self._sync()
        return time.perf_counter() - self.start - self.excluded

    def record(self, iteration: int, bce: Callable[[], torch.Tensor],
               objective: Callable[[], torch.Tensor] | None = None, restarts: int | None = None):
        """Append one history entry; bce/objective are per-sample values, computed (lazily) off the clock."""
        if self.muted:
            return
        seconds = self.elapsed()
        paused = time.perf_counter()
        with torch.no_grad():
            bce_values = bce()
            obj_values = bce_values if objective is None else objective()
            obj, bce_best = best_restart(obj_values, restarts or self.restarts, bce_values)
        self.history.append({"iteration": int(iteration), "seconds": seconds,
                             "objective": float(obj.mean()), "bce": float(bce_best.mean())})
        self._sync()
        self.excluded += time.perf_counter() - paused


def record_bce(rec: Recorder, iteration: int, layers, z: torch.Tensor, x: torch.Tensor,
               objective: torch.Tensor | None = None) -> None:
    """One history entry at z now: its BCE against x and the given per-sample objective."""
    rec.record(iteration, lambda: bce(layers, z.detach(), x), None if objective is None else lambda: objective.detach())


def best_restart(objective: torch.Tensor, restarts: int, *others: torch.Tensor):
    """Per image, the restart with the lowest objective: (objective, *others) at it, shape (N,)."""
    obj = objective.reshape(restarts, -1)
    best = torch.nan_to_num(obj, nan=math.inf).argmin(0, keepdim=True)
    picked = [obj.gather(0, best)[0]]
    for values in others:
        values = values.reshape(restarts, obj.shape[1], *values.shape[1:])
        index = best.reshape(1, -1, *([1] * (values.dim() - 2))).expand(1, *values.shape[1:])
        picked.append(values.gather(0, index)[0])
    return picked


def timed(device: torch.device, body: Callable[[Recorder], tuple], restarts: int = 1) -> MethodResult:
    """Run body(recorder) -> (z, iterations, info) under the clock; the one timing path of all methods."""
    recorder = Recorder(device, restarts)
    z, iterations, info = body(recorder)
    seconds = recorder.elapsed()
    info["wall_seconds"] = seconds + recorder.excluded
    return MethodResult(z.detach(), seconds, int(iterations), recorder.history, info)
