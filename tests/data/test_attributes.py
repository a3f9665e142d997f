"""Attributes measured from the music: key/mode, tempo, density, register, polyphony, instruments (MIDI);
tempo, loudness, brightness (audio); user input parsed into bucket values."""

from __future__ import annotations

import numpy as np
import pytest

from cinematic.data.attributes import (
    AUDIO_ATTRIBUTES,
    SYMBOLIC_ATTRIBUTES,
    attributes_from_raw,
    augment_raw,
    measure_audio,
    measure_score,
    measure_score_raw,
    parse_attribute,
    parse_attributes,
)
from cinematic.errors import UserError


def chord_score(chords, bpm: float, voices_program: int = 0, drums: bool = False, repeat: int = 4):
    """A symusic Score playing `chords` (lists of MIDI pitches), one per beat at `bpm`."""
    from symusic import Note, Score, Tempo, Track

    score = Score(480)
    score.tempos.append(Tempo(0, float(bpm)))
    track = Track(name="t", program=voices_program, is_drum=drums)
    beat = 0
    for _ in range(repeat):
        for chord in chords:
            for pitch in chord:
                track.notes.append(Note(beat * 480, 470, int(pitch), 80))
            beat += 1
    score.tracks.append(track)
    return score


C_MAJOR = [[48, 64, 67, 72], [53, 65, 69, 72], [55, 62, 67, 71], [48, 64, 67, 72]]  # I IV V I
A_MINOR = [[45, 64, 69, 72], [50, 65, 69, 74], [52, 64, 68, 71], [45, 64, 69, 72]]  # i iv V i


def test_key_mode_tempo_and_counts_are_read_from_the_notes():
    major = measure_score(chord_score(C_MAJOR, 90))
    minor = measure_score(chord_score(A_MINOR, 90))
    assert (major["key"], major["mode"]) == ("c major", "major")
    assert (minor["key"], minor["mode"]) == ("a minor", "minor")
    assert major["tempo"] == "moderate"  # 90 bpm, from the onsets (not the tempo map)
    assert major["polyphony"] == "high" and major["instruments"] == "piano"
    raw = measure_score_raw(chord_score(C_MAJOR, 90))
    assert raw["notes_per_second"] == pytest.approx(4 * 1.5, rel=0.05)  # 4 notes per beat, 1.5 beats/s
    assert raw["bpm"] == pytest.approx(90, rel=0.03)
    fast = measure_score_raw(chord_score(C_MAJOR, 150, voices_program=41))
    assert fast["bpm"] == pytest.approx(150, rel=0.03) and fast["instruments"] == "strings"
    melody = measure_score(chord_score([[84], [86], [88], [89]], 100))
    assert melody["register"] == "high" and melody["polyphony"] == "low" and melody["density"] == "low"


def test_drum_only_files_have_instruments_drums_and_no_key():
    found = measure_score(chord_score([[36], [38], [36], [38]], 120, drums=True))
    assert found["instruments"] == "drums" and "key" not in found and "tempo" in found


def test_augmentation_moves_the_key_with_the_transposition_and_tempo_with_the_stretch():
    raw = measure_score_raw(chord_score(C_MAJOR, 100))
    moved = attributes_from_raw(augment_raw(raw, semitones=2, stretch=1.0))
    assert moved["key"] == "d major"
    assert attributes_from_raw(augment_raw(raw, -3))["key"] == "a major"
    assert attributes_from_raw(augment_raw(raw, 0, stretch=2.0))["tempo"] == "slow"  # 50 bpm


def test_every_measured_value_is_an_accepted_value():
    for score in (chord_score(C_MAJOR, 60), chord_score(A_MINOR, 200)):
        for name, value in measure_score(score).items():
            assert value in SYMBOLIC_ATTRIBUTES[name]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("key", "D minor", "d minor"),
        ("key", "dm", "d minor"),
        ("key", "Bb", "bb major"),
        ("key", "A# minor", "bb minor"),
        ("key", "E-", "eb major"),
        ("mode", "Minor", "minor"),
        ("tempo", 90, "moderate"),
        ("tempo", "140 bpm", "very_fast"),
        ("tempo", "Slow", "slow"),
        ("density", "High", "high"),
        ("density", 2.5, "low"),
        ("instruments", 41, "strings"),
        ("instruments", "Drums", "drums"),
        ("loudness", -10, "loud"),
        ("brightness", "dark", "dark"),
    ],
)
def test_user_input_is_normalised_to_a_bucket(name, value, expected):
    assert parse_attribute(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "listed"),
    [("key", "h minor", "d minor"), ("tempo", "fastish", "very_fast"), ("tempo", -5, "slow"),
     ("mode", "dorian", "major, minor"), ("colour", "red", "key, mode, tempo")],
)  # fmt: skip
def test_unknown_values_and_names_are_user_errors_listing_what_is_accepted(name, value, listed):
    with pytest.raises(UserError, match=listed):
        parse_attribute(name, value)


def test_sidecar_values_are_parsed_and_other_keys_ignored():
    labels = {"emotion": "sad", "key": "F# minor", "tempo": 72, "scene": ""}
    assert parse_attributes(labels) == {"key": "f# minor", "tempo": "slow"}


def test_audio_attributes_tempo_loudness_and_brightness():
    sr = 22050
    t = np.arange(int(sr * 6)) / sr
    clicks = np.zeros_like(t)
    period = int(sr * 60 / 120)  # 120 bpm clicks of a 4 kHz burst
    burst = np.sin(2 * np.pi * 4000 * t[:400]) * np.hanning(400)
    for start in range(0, len(t) - 400, period):
        clicks[start : start + 400] += burst
    loud = measure_audio(0.9 * clicks / np.abs(clicks).max(), sr)
    assert loud["tempo"] in ("fast", "moderate") and loud["brightness"] == "bright"
    hum = measure_audio(0.003 * np.sin(2 * np.pi * 110 * t), sr)
    assert hum["brightness"] == "dark" and hum["loudness"] == "quiet"
    assert measure_audio(np.sin(2 * np.pi * 220 * t)[None].repeat(2, 0) * 0.9, sr)["loudness"] == "loud"
    assert set(loud) <= set(AUDIO_ATTRIBUTES) and measure_audio(np.zeros(sr), sr) == {}


def test_the_config_accepts_exactly_the_measured_attributes():
    from typing import get_args

    from cinematic.configs.model_config import AttributeName, MusicModelConfig

    assert set(get_args(AttributeName)) == set(SYMBOLIC_ATTRIBUTES) | set(AUDIO_ATTRIBUTES)
    assert MusicModelConfig(attributes=["key", "tempo"]).attributes == ["key", "tempo"]
    with pytest.raises(ValueError, match="colour"):
        MusicModelConfig(attributes=["colour"])
