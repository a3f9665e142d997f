"""Pieces of the distributed set-up that need no process group: FSDP units (the epoch sampler is
tests/data/test_sampler.py)."""

from __future__ import annotations

from torch import nn

from cinematic.training.distributed import shard_units


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
