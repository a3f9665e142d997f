"""Pieces of the distributed set-up that need no process group: FSDP units and the epoch sampler."""

from __future__ import annotations

import torch
from torch import nn

from cinematic.training.distributed import shard_units
from cinematic.training.trainer import EpochSampler


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2))
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.wte.weight


def test_fsdp_units_are_blocks_innermost_first_and_skip_tied_weights():
    model = TiedLM()
    names = {id(module): name for name, module in model.named_modules()}
    # each block's Linear (inside the block's Sequential) before the blocks; no ReLU, no wte/head
    assert [names[id(unit)] for unit in shard_units(model)] == [
        "blocks.1.0",
        "blocks.0.0",
        "blocks.0",
        "blocks.1",
    ]


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
