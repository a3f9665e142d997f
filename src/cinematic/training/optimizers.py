"""Optimizers and learning-rate schedules (`training.optimizer`, `training.scheduler`).

Weight decay goes only to tensors with two or more dimensions (matrices, convolution kernels,
embedding tables); biases and normalisation scales are not decayed (as in nanoGPT's
`configure_optimizers` and Loshchilov & Hutter 2019, where decay regularises the weights, not the
offsets).

Every schedule is a multiplier of `training.learning_rate` as a function of `t`, the 1-based index
of the optimizer step about to be taken (so the very first step already has a non-zero rate), with
W = `warmup_steps`, T = total optimizer steps, r = `min_lr_ratio`:

- `cosine_warmup`: t/W for t ≤ W, then r + (1 - r) · ½(1 + cos(π·p)), p = (t - 1 - W)/(T - W), so the
  decay starts at the peak right after warmup and the last step (t = T) still learns (p < 1)
- `linear_warmup`: t/W for t ≤ W, then r + (1 - r) · (1 - p)
- `inverse_sqrt` (Noam, Vaswani et al. 2017 eq. 3, normalised to peak 1 at t = W): min(t/W, √(W/t))
- `exponential` (HiFi-GAN): `lr_decay` ** epoch, one decay per finished epoch, no warmup
- `constant`: t/W for t ≤ W, then 1
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cinematic.configs import TrainingConfig


def param_groups(models: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Two parameter groups: ≥2-D weights with decay, everything else (biases, norms) without."""
    decay, no_decay, seen = [], [], set()
    for model in models:
        for param in model.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _fused_supported(groups: list[dict]) -> bool:
    """torch's fused Adam(W) and SGD kernels (one pass per tensor instead of ~8 elementwise ops: 2 % of
    a Music Transformer step on CPU) take floating-point parameters on one CPU or CUDA device (SGD's
    not FSDP2's sharded ones). A fused optimizer also skips a step on the device (`found_inf`), which
    the NaN guard uses to skip without waiting for the device."""
    params = [p for group in groups for p in group["params"]]
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def build_optimizer(models: Iterable[nn.Module], tcfg: TrainingConfig) -> torch.optim.Optimizer:
    groups = param_groups(models, tcfg.weight_decay)
    if not groups:
        raise ValueError("a training phase has no trainable parameters")
    lr = tcfg.learning_rate
    fused = _fused_supported(groups)
    if tcfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tcfg.betas, eps=tcfg.eps, fused=fused)
    if tcfg.optimizer == "adam":
        # torch's Adam adds L2 decay to the gradient; decoupled decay is AdamW. Weight decay in a plain
        # Adam config (FastSpeech 2 uses 0) is honoured as Adam defines it.
        return torch.optim.Adam(groups, lr=lr, betas=tcfg.betas, eps=tcfg.eps, fused=fused)
    if tcfg.optimizer == "sgd":
        # torch has no sharding rule for fused SGD over FSDP2's DTensor parameters (it has for Adam).
        sharded = any(hasattr(p, "to_local") for group in groups for p in group["params"])
        return torch.optim.SGD(groups, lr=lr, momentum=tcfg.momentum, fused=fused and not sharded)
    raise ValueError(f"unknown optimizer {tcfg.optimizer!r}")


def lr_multiplier(step: int, tcfg: TrainingConfig, total_steps: int, steps_per_epoch: int) -> float:
    """The schedule's multiplier for optimizer step `step` (0-based count of steps already taken)."""
    t = step + 1
    warmup = tcfg.warmup_steps
    kind = tcfg.scheduler
    if kind == "exponential":
        return tcfg.lr_decay ** (step // max(1, steps_per_epoch))
    if kind == "inverse_sqrt":
        if warmup == 0:
            return 1.0 / math.sqrt(t)
        return min(t / warmup, math.sqrt(warmup / t))
    if warmup > 0 and t <= warmup:
        return t / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, max(0.0, (t - 1 - warmup) / span))
    ratio = tcfg.min_lr_ratio
    if kind == "cosine_warmup":
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear_warmup":
        return ratio + (1.0 - ratio) * (1.0 - progress)
    raise ValueError(f"unknown scheduler {kind!r}")


class _Multiplier:
    """The schedule as a callable object; its state is not saved (it is rebuilt from the config)."""

    def __init__(self, tcfg: TrainingConfig, total_steps: int, steps_per_epoch: int) -> None:
        self._args = (tcfg, total_steps, steps_per_epoch)

    def __call__(self, step: int) -> float:
        return lr_multiplier(step, *self._args)


def build_scheduler(
    optimizer: torch.optim.Optimizer, tcfg: TrainingConfig, total_steps: int, steps_per_epoch: int
) -> LambdaLR:
    """A per-optimizer-step scheduler (call `.step()` after every optimizer step, skipped or not)."""
    scheduler = LambdaLR(optimizer, _Multiplier(tcfg, total_steps, steps_per_epoch))
    return scheduler


def scheduler_state(scheduler: LambdaLR) -> dict:
    """The scheduler's state without the multiplier object (it is rebuilt from the config)."""
    state = scheduler.state_dict()
    state.pop("lr_lambdas", None)
    return state


def load_scheduler_state(scheduler: LambdaLR, state: dict) -> None:
    state = dict(state)
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(state)
