"""Exponential moving average of model weights (`training.ema_decay`), used for validation and export.

After optimizer update number n (1-based) every parameter's shadow θ̄ moves toward the weights θ:

    θ̄_n = d_n · θ̄_{n-1} + (1 - d_n) · θ_n,     d_n = min(decay, (1 + n) / (10 + n)),    θ̄_0 = θ_0

The warm-up term (1 + n)/(10 + n) (TensorFlow's `ExponentialMovingAverage(num_updates=...)`) keeps a
short run from being dominated by the random initial weights: with decay 0.999 and 30 steps, a plain
EMA would still hold 97 % of θ_0, while the warmed-up one follows the trained weights (d_1 = 0.18,
d_30 = 0.78, and the nominal decay is reached after ≈ 9 000 updates).

The shadow lives beside the model as fp32 tensors, one per parameter, in the same layout as the
parameters (for FSDP2 that is the local shard), so updating it needs no communication. Buffers
(normalisation statistics) are taken from the live model when the EMA weights are swapped in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of an FSDP2 DTensor parameter, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def ema_decay_at(decay: float, num_updates: int) -> float:
    """The decay used for update number `num_updates` (1-based), with the warm-up."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class EMA:
    """Shadow weights of several models (by name)."""

    def __init__(self, models: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.params: dict[str, list[torch.Tensor]] = {
            name: [p for p in model.parameters()] for name, model in models.items()
        }
        self.shadow: dict[str, list[torch.Tensor]] = {
            name: [_local(p.detach()).float().clone() for p in params] for name, params in self.params.items()
        }

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        weight = 1.0 - ema_decay_at(self.decay, self.num_updates)
        for name, params in self.params.items():
            current = [_local(p.detach()).float() for p in params]
            torch._foreach_lerp_(self.shadow[name], current, weight)

    @torch.no_grad()
    def copy_from_models(self, names: list[str] | None = None) -> None:
        """Reset the shadow of `names` (None: all) to the models' current weights (after loading EMA
        weights into them, or to start the EMA at restored weights)."""
        for name in self.params if names is None else names:
            for shadow, param in zip(self.shadow[name], self.params[name]):
                shadow.copy_(_local(param.detach()))

    @contextlib.contextmanager
    def swapped_in(self, names: list[str] | None = None) -> Iterator[None]:
        """Temporarily put the EMA weights into the models (validation, sampling, checkpointing)."""
        names = list(self.params) if names is None else [n for n in names if n in self.params]
        backup = {name: [_local(p.detach()).clone() for p in self.params[name]] for name in names}
        with torch.no_grad():
            for name in names:
                for shadow, param in zip(self.shadow[name], self.params[name]):
                    _local(param.detach()).copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for name in names:
                    for saved, param in zip(backup[name], self.params[name]):
                        _local(param.detach()).copy_(saved)
