"""`cinematic.load(checkpoint)`: the generator object of any checkpoint (DESIGN §8); `generate_song`: a
song from a music, a lyrics and a singing checkpoint, as `cinematic generate song` writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cinematic import registry
from cinematic.checkpoint_io import read_checkpoint

__all__ = ["generate_song", "load", "read_checkpoint"]


def load(checkpoint: str | Path | dict[str, Any], device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """The ready generator/synthesizer of a checkpoint of any model family (music, lyrics, voice, vocoder,
    or an installed plugin's): the registry picks the family from the checkpoint."""
    if isinstance(checkpoint, dict):
        return registry.load(checkpoint, device=device, **kwargs)
    kwargs.setdefault("checkpoint_path", str(checkpoint))
    return registry.load(read_checkpoint(checkpoint), device=device, source=str(checkpoint), **kwargs)


def generate_song(
    music: str | Path | dict[str, Any],
    singer: str | Path | dict[str, Any],
    lyrics: str | Path | dict[str, Any] | None = None,
    *,
    language: str,
    emotion: str | None = None,
    out: str | Path | None = None,
    vocoder: str | Path | dict[str, Any] | None = None,
    device: str = "cpu",
    **options: Any,
) -> Any:
    """A song (`cinematic.generation.song.Song`) from three checkpoints; with `out`, its files are written
    there (song.wav, vocals.wav, accompaniment.wav, song.mid, lyrics.lrc, song.json).

        song = generate_song("music.pth", "singing.pth", "lyrics.pth", language="en", emotion="sad",
                             key="d minor", tempo=84, seed=0, out="my_song/")

    `options` are those of `SongGenerator.generate`: genre, scene, key, tempo, lyrics_text, lyrics_file,
    melody, reference, timbre_strength (the reference-timbre step, 0 = the model's zero-shot voice alone),
    singer (a training singer's name), structure, duration, seed, progress."""
    from cinematic.generation.song import SongGenerator

    songs = SongGenerator.from_checkpoints(
        music=music, singer=singer, lyrics=lyrics, vocoder=vocoder, device=device
    )
    song = songs.generate(language=language, emotion=emotion, **options)
    if out is not None:
        song.save(out)
    return song
