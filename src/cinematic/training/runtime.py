"""Where batches and models are when the task sees them: tensors moved to the training device
(`to_device`, `DeviceLoader`), the context validation and sampling run in (`forked_rng`,
`eval_mode`), and how the epoch reaches persistent loader workers (`EpochTaggedSampler`,
`EpochAwareDataset`). Used by `cinematic.training.trainer`, which re-exports these names."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger("cinematic.training")


def to_device(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside dicts, lists, tuples and dataclass instances (other objects are left as
    they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        moved = {f.name: to_device(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **moved)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, list):
        return [to_device(value, device) for value in obj]
    if isinstance(obj, tuple):
        moved = [to_device(value, device) for value in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else tuple(moved)
    return obj


def batch_len(batch: Any) -> int:
    """Items in a collated batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        values = list(batch.values())
    elif isinstance(batch, list | tuple):
        values = list(batch)
    else:
        return 1
    for value in values:
        if isinstance(value, torch.Tensor | dict | list | tuple):
            return batch_len(value)
    return len(values)


@contextlib.contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """Run a block (validation, sampling) without moving any random stream of the training run."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def eval_mode(models: Mapping[str, nn.Module]) -> Iterator[None]:
    was_training = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    try:
        yield
    finally:
        for name, model in models.items():
            model.train(was_training[name])


class DeviceLoader:
    """A data loader whose batches arrive on the training device (what `Task.validate` iterates)."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # .dataset, .batch_size, ... of the wrapped loader
        return getattr(self.loader, name)


# ------------------------------------------------------------------------------ epochs in the workers


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """`sampler`'s indices as (index, epoch) pairs, the epoch read from `sampler.epoch` when an epoch's
    iteration starts (in the main process): how the epoch reaches persistent loader workers."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((index, epoch) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochAwareDataset(Dataset):
    """A dataset with `set_epoch` (per-epoch crops and augmentation) read by (index, epoch) keys
    (`EpochTaggedSampler`): a loader worker's copy calls `set_epoch` itself when an item of a new epoch
    comes, so the workers can stay up for the whole run (`persistent_workers`) and still see every
    epoch. In the main process (`num_workers: 0`) `set_epoch` is called once per epoch, as before."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        if epoch != self.epoch:
            self.set_epoch(epoch)
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


class FixedShapes:
    """Whether the first micro-batches all have the same shapes (fixed crops, HiFi-GAN's segments):
    then cudnn.benchmark pays; with varying shapes every new one would be autotuned again."""

    SEEN = 3
    """Micro-batches whose shapes must agree."""

    def __init__(self) -> None:
        self.shapes: list[tuple] = []

    def observe(self, group: list[Any]) -> bool | None:
        """True: the shapes are fixed; False: they vary; None: not decided yet."""
        self.shapes.extend(shape_signature(batch) for batch in group)
        if len(set(self.shapes)) > 1:
            return False
        return True if len(self.shapes) >= self.SEEN else None


def shape_signature(batch: Any) -> tuple:
    """The shapes (and dtypes) of the tensors in a batch, in order: equal for batches of fixed shapes."""
    if isinstance(batch, torch.Tensor):
        return (tuple(batch.shape), batch.dtype)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return tuple(shape_signature(getattr(batch, f.name)) for f in dataclasses.fields(batch))
    if isinstance(batch, dict):
        return tuple((key, shape_signature(value)) for key, value in batch.items())
    if isinstance(batch, list | tuple):
        return tuple(shape_signature(value) for value in batch)
    return ()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs where bf16 autocast is faster than fp32 (not AVX2-only ones)."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def resolve_amp(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `training.amp` on this device (None: fp32). See docs/training.md."""
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        # Native bf16 only (compute capability 8.0, Ampere, on): torch counts the emulated bf16 of a
        # V100/T4 as supported, which runs far slower than fp16 + GradScaler there.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    log.warning(
        "training.amp: true, but this %s has no native bf16: training in fp32 (set amp: bf16 to force it)",
        device.type.upper(),
    )
    return None
