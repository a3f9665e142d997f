"""The optimizer phases of a step (`Built.phases`; one "main" phase unless the task is a GAN): each
holds its models under one module, an optimizer over their parameters, its per-step schedule and,
under fp16 autocast, its grad scaler. The trainer runs them in order every step; the checkpoint keeps
their states under `optimizers`, `schedulers` and `scalers`, keyed by phase name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cinematic.configs import TrainingConfig
from cinematic.training.optimizers import build_optimizer, build_scheduler
from cinematic.training.task import Phase


@dataclass
class PhaseState:
    phase: Phase
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any | None
    container: nn.ModuleDict
    """The phase's (unwrapped) models under one module: the key space of its optimizer state."""

    @property
    def name(self) -> str:
        return self.phase.name

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def clip_gradients(self, max_norm: float | None, device: torch.device) -> torch.Tensor:
        """Clip the phase's global gradient norm to `max_norm` (None: only measure it; after unscaling);
        returns the norm before clipping, on every rank the norm of the whole (unsharded) gradient."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=device)
        if max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor already reduced over the shards
            norm = norm.full_tensor()
        return norm


def build_phases(
    phases: list[Phase],
    models: Mapping[str, nn.Module],
    tcfg: TrainingConfig,
    total_steps: int,
    steps_per_epoch: int,
    scaler_device: str | None = None,
) -> list[PhaseState]:
    """One `PhaseState` per phase over the (unwrapped) `models`; a grad scaler on `scaler_device`
    when given (fp16 autocast)."""
    out = []
    for phase in phases:
        unknown = [n for n in phase.models if n not in models]
        if unknown:
            raise ValueError(f"phase {phase.name!r} names unknown models {unknown}; built: {list(models)}")
        container = nn.ModuleDict({n: models[n] for n in phase.models})
        optimizer = build_optimizer(container.values(), tcfg)
        scheduler = build_scheduler(optimizer, tcfg, total_steps, steps_per_epoch)
        scaler = torch.amp.GradScaler(scaler_device) if scaler_device is not None else None
        out.append(PhaseState(phase, optimizer, scheduler, scaler, container))
    return out
