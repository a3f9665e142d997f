"""The optimizer phases of a step (`Built.phases`; one "main" phase unless the task is a GAN): each
holds its models under one module, an optimizer over their parameters, its per-step schedule and,
under fp16 autocast, its grad scaler. The trainer runs them in order every step; the checkpoint keeps
their states under `optimizers`, `schedulers` and `scalers`, keyed by phase name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
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


def done_parameters(phases: list[Phase], models: Mapping[str, nn.Module]) -> list[list[nn.Parameter]]:
    """Per phase, the parameters of the models that only earlier phases train (a GAN's discriminator
    in the generator phase): their update of this step is done, so the phase runs them with
    requires_grad off (no weight gradients computed, nothing kept for them), gradients still flowing
    through them to the inputs. Models a later phase trains stay as they are: their forward in this
    phase may build the graph that phase back-propagates (a GAN's generated audio)."""
    frozen = []
    for index in range(len(phases)):
        later = {id(p) for ph in phases[index:] for n in ph.models for p in models[n].parameters()}
        done: dict[int, nn.Parameter] = {}
        for phase in phases[:index]:
            for name in phase.models:
                for param in models[name].parameters():
                    if id(param) not in later:
                        done[id(param)] = param
        frozen.append(list(done.values()))
    return frozen


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """A phase run with `params` (`done_parameters`) set to requires_grad False; a parameter the task
    froze itself stays frozen."""
    params = [p for p in params if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


@dataclass
class PendingStep:
    """A step's per-phase skip flags on their way to the host, and what the bar shows of its phases."""

    step: int
    flags: torch.Tensor
    """(phases,) float32: 1 where the phase skipped its update."""
    shown: list[tuple[str, torch.Tensor, Any]]
    event: Any = None

    @classmethod
    def record(
        cls, step: int, flags: torch.Tensor, shown: list[tuple[str, torch.Tensor, Any]]
    ) -> PendingStep:
        if flags.device.type != "cuda":
            return cls(step, flags, shown)
        host = flags.to("cpu", non_blocking=True)  # into pinned memory: the copy does not wait
        event = torch.cuda.Event()
        event.record()
        return cls(step, host, shown, event)

    def read(self) -> list[bool]:
        """The flags as bools: one host synchronisation, with the step's own work only (on CUDA the
        event of its copy; the device is usually past it when this runs)."""
        if self.event is not None:
            self.event.synchronize()
        return [flag > 0 for flag in self.flags.tolist()]


def step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """`optimizer.step()` unless `skip` (a float32 0/1 tensor on the device) is 1. A fused optimizer
    (Adam, AdamW, SGD with fused=True) takes the flag as GradScaler hands it `found_inf`: the kernel
    leaves weights and state as they were, with no host synchronisation. Others read the flag (a sync)."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = skip  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif not skip.item():
        optimizer.step()


@torch.no_grad()
def poison_gradients(params: list[torch.Tensor], skip: torch.Tensor) -> None:
    """Put a NaN into one gradient element when `skip` is 1 (on the device, no sync), so that fp16's
    GradScaler, which looks at the gradients only, skips the update and lowers the scale for a
    non-finite loss on any rank."""
    for param in params:
        grad = param.grad
        if grad is None:
            continue
        local = grad.to_local() if hasattr(grad, "to_local") else grad
        if local.numel() and local.is_contiguous():
            first = local.view(-1)[:1]
            first.copy_(torch.where(skip > 0, torch.full_like(first, float("nan")), first))
            return
