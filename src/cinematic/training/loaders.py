"""The run's data loaders: the training order (`EpochSampler`: a pure function of seed and epoch that
can start mid-epoch, for exact resume) and the validation loader whose batches arrive on the device;
`DataPosition`, the checkpoint piece that lets a run resume its epoch on another world size."""

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
from cinematic.training.state import TrainState
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


@dataclass
class DataPosition:
    """Checkpoint piece (top level: `data_position`) that continues an epoch on another world size.

    `TrainState.batch_in_epoch` counts this rank's batches, which means nothing to a run with another
    number of ranks. On such a resume the positions of the epoch's order already consumed (b·B·W, see
    `cinematic.data.sampler`) are carried over to the sampler, and `batch_in_epoch` becomes the batch
    the new share starts at, so the epoch ends after the usual number of batches with every position
    seen once. Registered after `TrainState` (it reads the restored position). A checkpoint without
    this key (older versions) gives the world size at its top level and no earlier carry-over."""

    sampler: EpochSampler
    state: TrainState
    batch_size: int
    batches_per_epoch: int

    def state_dict(self) -> dict[str, Any]:
        carry = self.sampler.carry
        return {
            "data_position": {
                "world_size": self.sampler.world_size,
                "batch_size": self.batch_size,
                "carry": list(carry) if carry is not None else None,
            }
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("data_position") or {
            "world_size": checkpoint.get("world_size"),
            "batch_size": self.batch_size,
            "carry": None,
        }
        carry = tuple(saved["carry"]) if saved.get("carry") is not None else None  # see carry_over
        old_world = saved.get("world_size")
        state, sampler = self.state, self.sampler
        if old_world is None or int(old_world) == sampler.world_size:
            if carry is not None:
                sampler.carry_over(*carry)  # type: ignore[arg-type]
            return
        if state.batch_in_epoch == 0:
            return
        old_world, old_batch = int(old_world), int(saved.get("batch_size") or self.batch_size)
        if carry is not None and carry[0] == state.epoch:
            _, consumed, skip, base_total = carry[:4]
        else:
            consumed, skip, base_total = 0, 0, old_world * math.ceil(sampler.size / old_world)
        consumed += (state.batch_in_epoch - skip // old_batch) * old_batch * old_world
        end = base_total if sampler.weights is not None else sampler.size
        rest = max(0, end - consumed)
        # the rest, padded to whole batches on every rank (the loader's drop_last then drops nothing);
        # only a rest longer than a usual epoch's batches (a resume at the very start of an epoch that
        # drops its last partial batch) loses its tail, as that epoch would
        batches = math.ceil(rest / (sampler.world_size * self.batch_size))
        skip_batches = max(0, self.batches_per_epoch - batches)
        sampler.carry_over(state.epoch, consumed, skip_batches * self.batch_size, base_total, self.batch_size)
        state.batch_in_epoch = skip_batches
