"""Singing from a singing checkpoint (XiaoiceSing): notes with syllables in, a waveform out.

    singer = SingingSynthesizer.from_checkpoint("work_dir/singing/checkpoints/best.pth")
    audio = singer.sing(notes, language="en", singer="alto", seed=0)   # SungAudio
    # audio.wav: float32 mono at audio.sample_rate; audio.syllable_onsets: one per non-slur note

Interface first (the song pipeline builds on it); the implementation follows in the next commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.data.singing import SungNote


@dataclass
class SungAudio:
    """What `SingingSynthesizer.sing` returns."""

    wav: np.ndarray
    """float32 mono."""
    sample_rate: int
    syllable_onsets: list[float]
    """Seconds, one per non-slur note: where each syllable's first phoneme starts."""


class SingingSynthesizer:
    """What `cinematic.load` returns for a singing checkpoint."""

    singers: list[str]
    """The singers of the training data (names for `sing(singer=...)`)."""
    languages: list[str]
    """The languages the model was trained on."""
    sample_rate: int
    """Sample rate of the waveforms `sing` returns (the vocoder's)."""

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path | dict[str, Any], device: str = "cpu", vocoder: Any = None
    ) -> SingingSynthesizer:
        """A ready synthesizer from a singing checkpoint (a path or a dict) alone: model settings, phoneme
        table, singers and languages come from its task state. `vocoder`: a vocoder checkpoint (path or
        dict) or object; default: the vocoder the training run recorded."""
        raise NotImplementedError("SingingSynthesizer.from_checkpoint: implementation in progress")

    def sing(
        self,
        notes: Sequence[SungNote],
        language: str,
        singer: str | None = None,
        reference: Path | None = None,
        seed: int = 0,
    ) -> SungAudio:
        """Sing `notes` in `language` as a training `singer` (default: the first) or zero-shot like the voice
        in a `reference` clip (speech or singing). Each syllable's phonemes fill its note(s); the same seed
        gives the same samples. A `UserError` for an empty note list, an unknown singer, or a language
        the model lacks (naming the languages it has)."""
        raise NotImplementedError("SingingSynthesizer.sing: implementation in progress")
