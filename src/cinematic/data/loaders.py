"""DataLoader builders: seeded workers, persistent workers, and distributed / balanced samplers.

`data.num_workers` is the seed's advice for slow training: raise it when the GPU waits for data.
Every worker's numpy and `random` streams are seeded from the loader's torch generator, so a run with
the same seed loads, crops and augments the same items in the same order whatever the worker count.

Under DDP (torchrun) each rank gets its own share of ONE seeded stream: the stream is drawn with
seed + epoch on every rank, and rank r takes items r, r + W, r + 2W, ... . So the ranks never overlap
(without replacement) and together they draw exactly what a single process would.

    loader = build_loader(dataset, batch_size=8, num_workers=cfg.data.num_workers, seed=cfg.training.seed,
                          weights=balanced_weights_for(labels, cfg.data.balance_attributes, cfg.data.balance_alpha))
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        for batch in loader: ...
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of the initialized process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn`: seed numpy and `random` from the worker's torch seed (which the DataLoader
    derives from its generator and the worker id), so every worker has its own reproducible stream."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class ShardedSampler(Sampler[int]):
    """Shuffled (or ordered) indices split across ranks; the order is a permutation seeded by
    seed + epoch, padded by repetition to a multiple of the world size (like `DistributedSampler`)."""

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        default_rank, default_world = dist_info()
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.num_samples = size // self.world_size if drop_last else math.ceil(size / self.world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        total = self.num_samples * self.world_size
        while len(order) < total and order:
            order += order[: total - len(order)]
        return iter(order[:total][self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.num_samples


class BalancedSampler(Sampler[int]):
    """Weighted draws with replacement (e.g. from `balance.balanced_weights`), one seeded stream per
    epoch shared by all ranks; each rank yields its every-W-th share, `num_samples` per rank."""

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | torch.Tensor,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        default_rank, default_world = dist_info()
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if self.weights.ndim != 1 or len(self.weights) == 0 or bool((self.weights < 0).any()):
            raise ValueError("weights must be a non-empty 1-D sequence of non-negative numbers")
        if float(self.weights.sum()) <= 0:
            raise ValueError("weights must not all be zero")
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.num_samples = (
            num_samples if num_samples is not None else math.ceil(len(self.weights) / self.world_size)
        )
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def stream(self) -> list[int]:
        """The whole epoch's draws for all ranks (rank r uses positions r, r + W, ...)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.world_size
        return torch.multinomial(self.weights, total, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.stream()[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.num_samples


def balanced_weights_for(
    labels: Sequence[dict], attributes: Sequence[str], alpha: float
) -> np.ndarray | None:
    """Per-item sampling weights balancing the given metadata attributes (`data.balance_attributes`,
    `data.balance_alpha`); None when no attribute is given or α = 1 (natural frequencies).
    Items without an attribute form their own "unknown" group."""
    from cinematic.data.balance import balanced_weights

    if not attributes or alpha >= 1.0 or not labels:
        return None
    groups = [tuple(str(item.get(a, "unknown")) for a in attributes) for item in labels]
    return balanced_weights(groups, alpha)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    persistent_workers: bool | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader with a seeded sampler (sharded across ranks, or balanced when `weights` is given),
    seeded workers (`seed_worker` + a generator seeded per rank), and pinned memory when CUDA is available.

    Workers persist across epochs (no start-up cost per epoch) unless the dataset has `set_epoch`:
    persistent workers hold their own copy of the dataset, so an epoch set in the main process would
    never reach them; such datasets get fresh workers each epoch instead (`persistent_workers=None`)."""
    size = len(dataset)  # type: ignore[arg-type]
    if weights is not None:
        if len(weights) != size:
            raise ValueError(f"{len(weights)} weights for {size} items")
        sampler: Sampler[int] = BalancedSampler(weights, seed=seed, rank=rank, world_size=world_size)
    else:
        sampler = ShardedSampler(size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    rank_now = getattr(sampler, "rank", 0)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + rank_now)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        if persistent_workers is None:
            persistent_workers = not hasattr(dataset, "set_epoch")
        extra["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        **extra,
    )


def build_loader_from_config(
    dataset: Dataset, config: Any, *, train: bool = True, **kwargs: Any
) -> DataLoader:
    """`build_loader` with the config's batch size, `data.num_workers` and `training.seed`."""
    kwargs.setdefault("num_workers", config.data.num_workers)
    kwargs.setdefault("seed", config.training.seed)
    kwargs.setdefault("shuffle", train)
    return build_loader(dataset, config.training.batch_size, **kwargs)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the sampler and a dataset that crops or augments per epoch (`item_rng(seed, epoch, i)`)
    which epoch starts; call it before iterating the loader for that epoch."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
