"""`EpochSampler`: the training order as a pure function of (seed, epoch), shared out over ranks, and
resumable inside an epoch."""

from __future__ import annotations

import itertools

import pytest
import torch

from cinematic.data.sampler import EpochSampler


@pytest.mark.parametrize(("size", "world_size"), [(12, 1), (12, 3), (10, 4), (3, 4)])
def test_ranks_share_out_one_epoch_without_overlap(size, world_size):
    ranks = [EpochSampler(size, seed=7, rank=r, world_size=world_size) for r in range(world_size)]
    for epoch in range(3):
        shares = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
        per_rank = -(-size // world_size)
        assert all(len(share) == per_rank == len(sampler) for share, sampler in zip(shares, ranks))
        together = [i for share in shares for i in share]
        assert set(together) == set(range(size))  # every item seen
        # Items repeat only to pad the last round up to a multiple of the world size.
        assert len(together) - len(set(together)) == per_rank * world_size - size
        if size % world_size == 0:
            for a, b in itertools.combinations(shares, 2):
                assert not set(a) & set(b)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 0.0, 3.0, 1.0, 1.0]])
def test_a_start_inside_the_epoch_gives_the_tail_of_the_full_order(weights):
    for rank in range(2):
        sampler = EpochSampler(7, seed=1, rank=rank, world_size=2, weights=weights)
        for epoch in (0, 5):
            sampler.set_epoch(epoch)
            sampler.set_start(0)
            full = list(sampler)
            for start in range(len(full) + 1):
                sampler.set_start(start)
                assert list(sampler) == full[start:] and len(sampler) == len(full) - start


def test_the_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(20, seed=3), EpochSampler(20, seed=3)
    b.set_epoch(2)
    list(b)  # iterating (or touching the global RNG) changes nothing
    torch.manual_seed(123)
    b.set_epoch(0)
    assert list(a) == list(b)
    assert list(a) != list(EpochSampler(20, seed=4))


def test_sampler_shards_one_permutation_per_epoch_and_resumes_inside_it():
    full = EpochSampler(10, seed=3)
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    order = full.epoch_indices()
    assert sorted(order) == list(range(10))
    assert ranks[0].epoch_indices() == order[0::2] and ranks[1].epoch_indices() == order[1::2]
    full.set_epoch(1)
    assert full.epoch_indices() != order  # a new permutation each epoch
    full.set_start(4)
    assert list(full) == full.epoch_indices()[4:] and len(full) == 6


def test_sampler_pads_uneven_shards_and_draws_weighted_items():
    ranks = [EpochSampler(5, seed=0, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0].epoch_indices()) == len(ranks[1].epoch_indices()) == 3
    weighted = EpochSampler(4, seed=0, weights=[0.0, 0.0, 1.0, 3.0])
    draws = torch.tensor(
        [i for epoch in range(50) for i in (weighted.set_epoch(epoch), weighted.epoch_indices())[1]]
    )
    assert set(draws.tolist()) <= {2, 3}
    assert 0.6 < (draws == 3).float().mean().item() < 0.9  # about 3/4
