"""Symbolic-route sampling: looking for EOS only every k tokens (what a GPU does, so it never reads a
token back one by one) gives exactly the tokens of stopping at the first EOS."""

from __future__ import annotations

import numpy as np
import torch

from cinematic.generation.music import generate_tokens
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

EOS = 2


def test_lazy_eos_checks_give_the_same_piece_as_stopping_at_the_first_eos():
    torch.manual_seed(0)
    cfg = MusicTransformerConfig(vocab_size=24, num_layers=1, num_heads=2, embed_dim=16, ff_dim=32,
                                 dropout=0.0, max_relative_position=8, condition_sizes=(3,))  # fmt: skip
    model = MusicTransformer(cfg).eval()
    ended = 0
    for seed in range(6):
        eager = generate_tokens(model, [1], 60, eos_id=EOS, seed=seed, eos_check_every=1)
        lazy = generate_tokens(model, [1], 60, eos_id=EOS, seed=seed, eos_check_every=16)
        np.testing.assert_array_equal(eager, lazy)
        assert EOS not in eager.tolist()
        ended += len(eager) < 60
    assert ended > 0  # some pieces did end at an EOS, so the cut was exercised
