from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from cinematic.data.balance import balanced_weights
from cinematic.data.loaders import (
    BalancedSampler,
    ShardedSampler,
    balanced_weights_for,
    build_loader,
    set_loader_epoch,
)
from cinematic.utils import item_rng


class NoisyItems(Dataset):
    """Item i is (i, a draw from numpy's global stream): shows whether workers are seeded."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([index, np.random.randint(0, 1 << 30)])


class EpochItems(Dataset):
    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor(item_rng(0, self.epoch, index).integers(0, 1 << 30))


def test_ranks_share_one_balanced_stream_and_alpha_0_draws_groups_evenly():
    groups = ["big"] * 90 + ["small"] * 10
    weights = balanced_weights(groups, 0.0)
    ranks = [BalancedSampler(weights, num_samples=5000, seed=7, rank=r, world_size=2) for r in range(2)]
    draws = [list(s) for s in ranks]
    stream = ranks[0].stream()
    assert draws[0] == stream[0::2] and draws[1] == stream[1::2]
    share = np.mean([groups[i] == "small" for d in draws for i in d])
    assert abs(share - 0.5) <= 0.03
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != draws[0]


def test_sharded_sampler_splits_without_overlap_and_reshuffles_per_epoch():
    samplers = [ShardedSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    parts = [list(s) for s in samplers]
    assert all(len(p) == 4 for p in parts)
    assert set().union(*parts) == set(range(10))
    samplers[0].set_epoch(1)
    assert list(samplers[0]) != parts[0]
    assert list(ShardedSampler(5, shuffle=False, rank=0, world_size=1)) == [0, 1, 2, 3, 4]


def test_loader_with_workers_is_reproducible_and_workers_differ():
    def run():
        loader = build_loader(NoisyItems(), batch_size=3, num_workers=2, seed=5)
        return torch.cat(list(loader))

    first, second = run(), run()
    assert torch.equal(first, second)
    assert sorted(first[:, 0].tolist()) == list(range(12))
    assert len(set(first[:, 1].tolist())) == 12  # no two workers share a numpy stream


def test_epoch_reaches_dataset_in_workers():
    loader = build_loader(EpochItems(), batch_size=4, num_workers=1, shuffle=False)
    set_loader_epoch(loader, 0)
    epoch0 = torch.cat(list(loader))
    set_loader_epoch(loader, 1)
    epoch1 = torch.cat(list(loader))
    assert not torch.equal(epoch0, epoch1)
    assert epoch1[2].item() == item_rng(0, 1, 2).integers(0, 1 << 30)


def test_balanced_weights_for_uses_config_attributes():
    labels = [{"emotion": "happy"}] * 3 + [{"emotion": "sad"}, {}]
    weights = balanced_weights_for(labels, ["emotion"], 0.0)
    assert weights[3] == pytest.approx(weights[4]) == pytest.approx(3 * weights[0])
    assert (
        balanced_weights_for(labels, [], 0.0) is None
        and balanced_weights_for(labels, ["emotion"], 1.0) is None
    )
    with pytest.raises(ValueError):
        build_loader(NoisyItems(), 2, weights=[1.0, 2.0])
