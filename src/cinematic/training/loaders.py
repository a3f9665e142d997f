"""The run's data loaders: the training order (`EpochSampler`: a pure function of seed and epoch that
can start mid-epoch, for exact resume) and the validation loader whose batches arrive on the device."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from cinematic.configs import TrainingConfig
from cinematic.data.sampler import EpochSampler
from cinematic.errors import UserError
from cinematic.training import distributed as D
from cinematic.training.runtime import DeviceLoader, EpochAwareDataset, EpochTaggedSampler
from cinematic.training.task import Built


@dataclass
class Loaders:
    sampler: EpochSampler
    epoch_set: EpochAwareDataset | None
    """The training set wrapped so workers learn the epoch with every index (None: it has no set_epoch)."""
    train: DataLoader
    val: DeviceLoader | None
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int


def build_loaders(built: Built, tcfg: TrainingConfig, workers: int, env: Any, data_dir: Path) -> Loaders:
    """This rank's training and validation loaders for a built task."""
    size = len(built.train_set)  # type: ignore[arg-type]
    if size == 0:
        raise UserError(f"the training set built from {data_dir} is empty; add data or check the layout")
    sampler = EpochSampler(
        size, seed=tcfg.seed, rank=env.rank, world_size=env.world_size, weights=built.sample_weights
    )
    drop_last = sampler.num_samples >= tcfg.batch_size
    loader_rng = torch.Generator()
    loader_rng.manual_seed(D.rank_seed(tcfg.seed, env.rank))
    # Workers hold copies of the dataset made when they start. A dataset with set_epoch (per-epoch
    # crops and augmentation) gets the epoch with every index, so its workers can stay up.
    epoch_set = EpochAwareDataset(built.train_set) if hasattr(built.train_set, "set_epoch") else None
    train = DataLoader(
        epoch_set if epoch_set is not None else built.train_set,
        batch_size=tcfg.batch_size,
        sampler=EpochTaggedSampler(sampler) if epoch_set is not None else sampler,
        collate_fn=built.collate_fn,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=env.device.type == "cuda",
        persistent_workers=workers > 0,
        generator=loader_rng,  # keeps the global torch RNG untouched by iter(loader)
    )
    n = sampler.num_samples
    batches_per_epoch = n // tcfg.batch_size if drop_last else math.ceil(n / tcfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / tcfg.gradient_accumulation_steps)
    val = None
    if built.val_set is not None and len(built.val_set) > 0:  # type: ignore[arg-type]
        loader = DataLoader(
            built.val_set,
            batch_size=tcfg.batch_size,
            shuffle=False,
            collate_fn=built.collate_fn,
            num_workers=workers,
            pin_memory=env.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        val = DeviceLoader(loader, env.device)
    total = tcfg.max_steps or tcfg.epochs * steps_per_epoch
    return Loaders(sampler, epoch_set, train, val, batches_per_epoch, steps_per_epoch, total)
