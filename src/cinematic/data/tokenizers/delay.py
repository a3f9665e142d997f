"""The delay interleaving pattern of MusicGen (Copet et al. 2023, §2.2, "delay" pattern).

K parallel code streams (RVQ codebooks) of T frames are laid out on T + K − 1 generation steps with
stream k shifted right by k steps:

    step        0    1    2    3    4
    stream 0   a0   a1   a2   a3    ·
    stream 1    ·   b0   b1   b2   b3          (T = 4, K = 2; · = `empty` token)

so one model step predicts all K streams at once, and codebook k of frame t is predicted after
codebook k − 1 of the same frame (one step earlier) has been seen — the coarse-to-fine order of RVQ is
kept while generation takes T + K − 1 steps instead of K·T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def interleave(codes: torch.Tensor, empty: int) -> torch.Tensor:
    """Codes (K, T) or (B, K, T) → delayed (…, K, T + K − 1); cells before and after a stream are `empty`."""
    k_streams, frames = codes.shape[-2], codes.shape[-1]
    out = codes.new_full((*codes.shape[:-1], frames + k_streams - 1), empty)
    for k in range(k_streams):
        out[..., k, k : k + frames] = codes[..., k, :]
    return out


def deinterleave(delayed: torch.Tensor) -> torch.Tensor:
    """Delayed (…, K, S) → codes (…, K, S − K + 1): the inverse of `interleave`."""
    k_streams, steps = delayed.shape[-2], delayed.shape[-1]
    frames = steps - k_streams + 1
    if frames < 0:
        raise ValueError(f"{steps} steps cannot hold {k_streams} delayed streams")
    return torch.stack([delayed[..., k, k : k + frames] for k in range(k_streams)], dim=-2)


def valid_mask(
    k_streams: int, steps: int, frames: int | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """(K, S) bool: True where stream k holds a real code at step s, i.e. k ≤ s < k + frames.

    `frames` defaults to S − K + 1 (a complete delayed sequence); a training crop that starts mid-piece
    passes a larger value so every step past the stream's start counts."""
    frames = steps - k_streams + 1 if frames is None else frames
    step = torch.arange(steps, device=device)
    k = torch.arange(k_streams, device=device).unsqueeze(1)
    return (step >= k) & (step < k + frames)


def frame_of(stream: int, step: int) -> int:
    """The frame index whose code stream `stream` carries at delayed step `step` (negative: none yet)."""
    return step - stream


@dataclass(frozen=True)
class StreamVocab:
    """Token ids of one stream: codes 0 … N − 1, then EMPTY (delay filler) and BOS."""

    codebook_size: int

    @property
    def empty_id(self) -> int:
        return self.codebook_size

    @property
    def bos_id(self) -> int:
        return self.codebook_size + 1

    @property
    def size(self) -> int:
        return self.codebook_size + 2


def delayed_sequence(codes: torch.Tensor, vocab: StreamVocab) -> torch.Tensor:
    """Codes (K, T) → (K, 1 + T + K − 1): a BOS column, then the delay-interleaved codes."""
    delayed = interleave(codes, vocab.empty_id)
    bos = torch.full((codes.shape[0], 1), vocab.bos_id, dtype=delayed.dtype)
    return torch.cat([bos, delayed], dim=1)
