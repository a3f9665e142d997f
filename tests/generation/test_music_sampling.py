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


def test_attributes_left_out_are_completed_from_a_matching_training_piece():
    from cinematic.generation.sampling import complete_conditions

    vocab = {
        "emotion": ["<none>", "a", "b"],
        "genre": ["<none>", "g"],
        "key": ["<none>", "c major", "a minor"],
    }
    sets = {"rows": [[1, 0, 1, 5], [2, 1, 2, 3]]}  # (emotion, genre, key, pieces)
    assert complete_conditions([1, 0, 0], vocab, sets, seed=0) == [1, 0, 1]  # a → its pieces' key
    assert complete_conditions([2, 0, 0], vocab, sets, seed=0) == [2, 0, 2]  # a label is never filled
    assert complete_conditions([0, 0, 0], vocab, sets, seed=0) == [0, 0, 0]  # nothing asked: unconditional
    assert complete_conditions([1, 1, 0], vocab, sets, seed=0) == [1, 1, 0]  # no piece matches
    assert complete_conditions([1, 0, 0], vocab, {}, seed=0) == [1, 0, 0]  # nothing recorded (old checkpoint)
