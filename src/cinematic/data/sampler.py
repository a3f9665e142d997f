"""`EpochSampler`: the training order, a pure function of (seed, epoch), that can start inside an epoch.

    sampler = EpochSampler(len(train_set), seed=0, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    sampler.set_start(batch_in_epoch * batch_size)   # exact resume: skip what this rank already saw

The order is `DistributedSampler`'s: one permutation of the whole set per epoch (seeded by seed + epoch,
the same on every rank), padded by wrapping around to a multiple of the world size, and every
world_size-th item of it for this rank, so the ranks share out one epoch without overlap. With
per-item weights (balanced sampling) it is `world_size * ceil(size / world_size)` draws with
replacement instead, shared out the same way. Nothing here touches the global RNGs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of this rank's share of one epoch, from position `start` (see the module docstring)."""

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(list(weights), dtype=torch.double)
        if self.weights is not None and len(self.weights) != size:
            raise ValueError(f"sample_weights has {len(self.weights)} entries for {size} training items")
        self.num_samples = math.ceil(size / world_size)
        """Items per rank and epoch (the padded share)."""
        self.total = self.num_samples * world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first `start` items of this rank's share (a resume inside the epoch)."""
        self.start = start

    def epoch_indices(self) -> list[int]:
        """This rank's whole share of the current epoch, in order."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(
                self.weights, self.total, replacement=True, generator=generator
            ).tolist()
        else:
            order = torch.randperm(self.size, generator=generator).tolist()
            order += order[: self.total - len(order)] * math.ceil(
                (self.total - len(order)) / max(1, len(order))
            )
            order = order[: self.total]
        return order[self.rank : self.total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
