"""A character bigram language model: the next byte from an embedding of the current one.

Small enough to read in a minute, real enough to learn: on any text its loss falls from ln 256.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class CharBigramConfig:
    """What the model needs to be rebuilt from a checkpoint alone."""

    vocab_size: int = 256
    """Bytes."""
    dim: int = 16
    """Width of the embedding the next-byte logits are read from."""


class CharBigram(nn.Module):
    """logits(next byte | byte) = W · E[byte]."""

    def __init__(self, config: CharBigramConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(idx))  # (B, T, vocab)

    @torch.no_grad()
    def sample(self, length: int, seed: int, start: int = ord("\n")) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        out = [start]
        for _ in range(length):
            logits = self(torch.tensor([[out[-1]]], device=self.head.weight.device))[0, -1].float().cpu()
            out.append(int(torch.multinomial(logits.softmax(-1), 1, generator=generator)))
        return out[1:]
