"""Singing data: the note type every singing part shares, and (below) the readers of singing corpora.

A sung melody is a list of `SungNote`s: one per syllable, plus one slurred continuation per extra pitch of
a melisma (`slur=True`, empty syllable). Onsets and durations are in seconds from the start of the song.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SungNote:
    """One note of a sung melody."""

    syllable: str
    """Text of the syllable ("" for a slurred continuation)."""
    pitch: int
    """MIDI note number."""
    onset: float
    """Seconds from the start of the song."""
    duration: float
    """Seconds."""
    slur: bool = False
    """True: continues the previous syllable on a new pitch (melisma)."""
    phonemes: tuple[str, ...] | None = None
    """The syllable's phonemes; None: the front end phonemises the syllable."""
