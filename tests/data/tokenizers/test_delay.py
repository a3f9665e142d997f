"""MusicGen delay pattern: layout, inverse, validity mask."""

from __future__ import annotations

import pytest
import torch

from cinematic.data.tokenizers.delay import deinterleave, frame_of, interleave, valid_mask

EMPTY = 99


def test_interleave_shifts_stream_k_by_k_steps():
    codes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    delayed = interleave(codes, EMPTY)
    assert delayed.tolist() == [
        [1, 2, 3, 4, EMPTY, EMPTY],
        [EMPTY, 5, 6, 7, 8, EMPTY],
        [EMPTY, EMPTY, 9, 10, 11, 12],
    ]
    for k in range(3):
        for step in range(6):
            frame = frame_of(k, step)
            if 0 <= frame < 4:
                assert delayed[k, step] == codes[k, frame]


@pytest.mark.parametrize("k_streams,frames", [(1, 5), (2, 1), (4, 7), (8, 3)])
def test_interleave_then_deinterleave_is_the_identity(k_streams, frames):
    codes = torch.randint(0, 50, (2, k_streams, frames))
    delayed = interleave(codes, EMPTY)
    assert delayed.shape == (2, k_streams, frames + k_streams - 1)
    assert torch.equal(deinterleave(delayed), codes)
    assert torch.equal(deinterleave(delayed[0]), codes[0])


def test_valid_mask_marks_exactly_the_real_codes():
    codes = torch.randint(0, 50, (3, 5))
    delayed = interleave(codes, EMPTY)
    mask = valid_mask(3, delayed.shape[-1])
    assert torch.equal(mask, delayed != EMPTY)
    # a crop from the middle of a piece: every step after the stream's start holds a code
    assert valid_mask(3, 4, frames=100).tolist() == [
        [True, True, True, True],
        [False, True, True, True],
        [False, False, True, True],
    ]


def test_deinterleave_rejects_too_few_steps():
    with pytest.raises(ValueError):
        deinterleave(torch.zeros(4, 2, dtype=torch.long))
