"""`StepWindow`: the training scalars accumulated between two log lines.

Losses, gradient norms and task metrics stay tensors on the device until the window is read at a log
step, so an ordinary step never waits for the device. Reading it gives the `train/*` scalars of
docs/training.md: loss, lr and grad_norm per phase (suffixed `_<phase>` when there are several, with
`train/loss` the last phase's), the task's metrics averaged over the window's steps, and throughput.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch


class StepWindow:
    def __init__(self, phases: list[str]) -> None:
        self.phases = phases
        self.reset()

    def reset(self) -> None:
        self.items: Any = 0
        """Items (in the task's throughput unit) of the first phase, summed over the window."""
        self.steps = 0
        self.loss: dict[str, list[torch.Tensor]] = {}
        self.metrics: dict[str, Any] = {}
        self.lr: dict[str, float] = {}
        self.grad_norm: dict[str, torch.Tensor] = {}
        self.start = time.perf_counter()

    def add_metrics(self, metrics: Mapping[str, Any], group_size: int) -> None:
        """One micro-batch's `StepOutput.metrics` (averaged over the accumulation group)."""
        for key, value in metrics.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.metrics[key] = self.metrics.get(key, 0.0) + value / group_size

    def add_phase(
        self, phase: str, loss: torch.Tensor, lr: float, grad_norm: torch.Tensor, items: Any
    ) -> None:
        """One phase of one optimizer step: its mean loss, learning rate and gradient norm."""
        self.lr[phase] = lr
        if phase == self.phases[0]:
            self.items += items
            self.steps += 1
        self.loss.setdefault(phase, []).append(loss)
        self.grad_norm[phase] = grad_norm.detach()

    def scalars(self, world_size: int, unit: str) -> dict[str, float]:
        """The `train/*` scalars of the window (a device sync); throughput is over all ranks."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        scalars: dict[str, float] = {}
        single = len(self.phases) == 1
        for name in self.phases:
            suffix = "" if single else f"_{name}"
            if self.loss.get(name):
                scalars[f"train/loss{suffix}"] = float(torch.stack(self.loss[name]).mean())
            if name in self.lr:
                scalars[f"train/lr{suffix}"] = self.lr[name]
            if name in self.grad_norm:
                scalars[f"train/grad_norm{suffix}"] = float(self.grad_norm[name])
        if not single and f"train/loss_{self.phases[-1]}" in scalars:
            scalars["train/loss"] = scalars[f"train/loss_{self.phases[-1]}"]
        for key, value in self.metrics.items():
            scalars[f"train/{key}"] = float(value) / max(1, self.steps)
        scalars[f"train/{unit}_per_s"] = float(self.items) * world_size / elapsed
        return scalars


class LiveLoss:
    """What the progress bar shows: a smoothed loss kept on the device, read at most every `every` s.

    `add` is called for every phase of every optimizer step; the bar's loss is the last phase's (as
    `train/loss`) and its throughput counts the first phase's items. It only queues a tensor update
    (no device sync). `due()` says whether `every` seconds have passed since the last read (or none
    happened yet: the bar shows figures from its first step on); `read()`
    then syncs once and returns (smoothed loss, items per second over all ranks since the last read).
    The smoothing is an exponential moving average over steps (`decay` per step, bias-corrected over
    the first steps); skipped (non-finite) steps are left out, so one NaN does not stay on the bar.
    """

    def __init__(
        self, device: torch.device, phases: list[str], decay: float = 0.9, every: float = 0.5
    ) -> None:
        self.loss_phase, self.items_phase = phases[-1], phases[0]
        self.decay, self.every = decay, every
        self.value = torch.zeros((), device=device)
        self.count = 0
        self.items: Any = 0
        self.last_read = time.perf_counter()
        self.reads = 0
        self.loss = float("nan")

    def add(self, phase: str, loss: torch.Tensor, items: Any, skipped: bool) -> None:
        if phase == self.items_phase:
            self.items += items
        if phase == self.loss_phase and not skipped:
            self.value.mul_(self.decay).add_(loss.detach().float(), alpha=1.0 - self.decay)
            self.count += 1

    def due(self) -> bool:
        return not self.reads or time.perf_counter() - self.last_read >= self.every

    def read(self, world_size: int) -> tuple[float, float]:
        now = time.perf_counter()
        if self.count:
            self.loss = float(self.value) / (1.0 - self.decay**self.count)
        rate = float(self.items) * world_size / max(now - self.last_read, 1e-9)
        self.items, self.last_read, self.reads = 0, now, self.reads + 1
        return self.loss, rate
