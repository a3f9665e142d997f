"""Symbolic-route sampling: looking for EOS only every k tokens (what a GPU does, so it never reads a
token back one by one) gives exactly the tokens of stopping at the first EOS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cinematic.errors import UserError
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


def test_a_request_is_completed_with_typical_values_coarse_attributes_first():
    """ "dark" is completed with a minor key: the 3 of 21 dark pieces that measure as major are cut at the
    mode (3 < 0.2 × 18), although their key alone (3 pieces ≥ 0.2 × 10) would pass a key-first cut."""
    from cinematic.generation.sampling import complete_conditions

    vocab = {
        "emotion": ["<none>", "dark"],
        "key": ["<none>", "c major", "a minor", "d minor"],
        "mode": ["<none>", "major", "minor"],
    }
    sets = {"rows": [[1, 2, 2, 10], [1, 3, 2, 8], [1, 1, 1, 3]]}  # (emotion, key, mode, pieces)

    def modes_and_keys(**kwargs) -> tuple[set[int], set[int]]:
        rows = [complete_conditions([1, 0, 0], vocab, sets, seed=seed, **kwargs) for seed in range(200)]
        return {row[2] for row in rows}, {row[1] for row in rows}

    assert modes_and_keys() == ({2}, {2, 3})  # always minor, both minor keys (variety kept)
    assert modes_and_keys(min_p=0.0) == ({1, 2}, {1, 2, 3})  # every matching piece in proportion
    assert modes_and_keys(min_p=1.0) == ({2}, {2})  # the most common value of each attribute
    with pytest.raises(UserError, match="fill_min_p"):
        complete_conditions([1, 0, 0], vocab, sets, seed=0, min_p=1.5)
