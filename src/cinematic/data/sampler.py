"""`EpochSampler`: the training order, a pure function of (seed, epoch), that can start inside an epoch.

    sampler = EpochSampler(len(train_set), seed=0, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    sampler.set_start(batch_in_epoch * batch_size)   # exact resume: skip what this rank already saw

The order is `DistributedSampler`'s: one permutation of the whole set per epoch (seeded by seed + epoch,
the same on every rank), padded by wrapping around to a multiple of the world size, and every
world_size-th item of it for this rank, so the ranks share out one epoch without overlap. With
per-item weights (balanced sampling) it is `world_size * ceil(size / world_size)` draws with
replacement instead, shared out the same way. Nothing here touches the global RNGs.

Resuming on another world size (`carry_over`): a run of W ranks that stopped after b batches of B
items per rank had consumed exactly the first b·B·W positions of the epoch's order (rank r took
positions r, r + W, …). A run of W' ranks continues that epoch with the positions not consumed,
shared out the same way (every W'-th of the rest, padded by wrapping around), so over the two runs no
position is skipped and none is seen twice, except that the rest is padded by wrapping around to a
whole number of batches on every rank (at most W'·B − 1 repeats at the very end, like the padding
of any epoch whose size the world size does not divide). To keep the trainer's batch counting, the
new share is preceded by `skip` positions that are never yielded: the resumed run starts at batch
skip / B and the epoch ends after the usual number of batches.
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
        self.carry: tuple[int, int, int, int, int] | None = None
        """(epoch, consumed, skip, base_total, batch_size) after `carry_over`, else None."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first `start` items of this rank's share (a resume inside the epoch)."""
        self.start = start

    def carry_over(self, epoch: int, consumed: int, skip: int, base_total: int, batch_size: int = 1) -> None:
        """Continue `epoch` after a run on another world size consumed the first `consumed` positions
        of its order (drawn for `base_total` positions: that run's padded epoch); this rank's share
        is then `skip` unused positions followed by its part of the rest, padded to whole batches of
        `batch_size` (module docstring)."""
        self.carry = (epoch, consumed, skip, base_total, batch_size)

    def _order(self, total: int) -> list[int]:
        """The epoch's order: a permutation of the items (unweighted) or `total` weighted draws."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, total, replacement=True, generator=generator).tolist()
        return torch.randperm(self.size, generator=generator).tolist()

    @staticmethod
    def _share(order: list[int], rank: int, world_size: int, multiple: int = 1) -> list[int]:
        """Every world_size-th item of `order` from `rank`, after padding it by wrapping around (to a
        share that is a multiple of `multiple`)."""
        total = math.ceil(len(order) / (world_size * multiple)) * world_size * multiple
        padded = order + order[: total - len(order)] * math.ceil((total - len(order)) / max(1, len(order)))
        return padded[:total][rank:total:world_size]

    def _carried(self) -> tuple[int, list[int]] | None:
        """(skip, this rank's part of the rest) while continuing a carried-over epoch."""
        if self.carry is None or self.carry[0] != self.epoch:
            return None
        _, consumed, skip, base_total, batch_size = self.carry
        end = base_total if self.weights is not None else self.size
        rest = self._order(base_total)[consumed:end]
        return skip, self._share(rest, self.rank, self.world_size, batch_size)

    def epoch_indices(self) -> list[int]:
        """This rank's whole share of the current epoch, in order (of a carried-over epoch: the part
        after the skipped positions)."""
        carried = self._carried()
        if carried is not None:
            return carried[1]
        return self._share(self._order(self.total), self.rank, self.world_size)

    def __iter__(self) -> Iterator[int]:
        carried = self._carried()
        if carried is not None:
            skip, share = carried
            return iter(share[max(0, self.start - skip) :])
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        carried = self._carried()
        if carried is not None:
            skip, share = carried
            return max(0, len(share) - max(0, self.start - skip))
        return max(0, self.num_samples - self.start)
