"""The song pipeline: melody under lyric constraints, accompaniment, mix, and the files of a song."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cinematic.data.singing import SungNote
from cinematic.data.syllables import parse_lyrics
from cinematic.errors import UserError
from cinematic.generation.melody import (
    Key,
    arrange_accompaniment,
    compose_melody,
    default_key,
    fit_melody,
    generate_material,
)
from cinematic.generation.mix import limiter_gain, loudness, mix_song

REPO_ROOT = Path(__file__).resolve().parents[2]
MUSIC = REPO_ROOT / "tests" / "fixtures" / "v1" / "music" / "checkpoints" / "best.pth"
LYRICS = REPO_ROOT / "tests" / "fixtures" / "v1" / "lyrics" / "checkpoints" / "best.pth"
TEXT = """[verse]
Under the water the lanterns glow
Nobody listens, the rivers flow
[chorus]
Hold on, hold on to the light
Sing me home tonight
[chorus]
Hold on, hold on to the light
Sing me home tonight
"""


@pytest.fixture(scope="module")
def music():
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.generation.music import MusicGenerator

    return MusicGenerator.from_checkpoint(read_checkpoint(MUSIC))


# --------------------------------------------------------------------------------------------- melody


def test_keys_parse_and_default_by_emotion():
    assert Key.parse("d minor") == Key(2, "minor") == Key.parse("Dm")
    assert Key.parse("Bb") == Key(10, "major")
    assert Key.parse("F# major").pitch_classes == frozenset({6, 8, 10, 11, 1, 3, 5})
    assert default_key("sad", 0).mode == "minor" and default_key("triumphant", 0).mode == "major"
    with pytest.raises(UserError, match="H major"):
        Key.parse("H major")


def test_decoding_constraint_keeps_every_note_in_key_and_range(music):
    key = Key.parse("e minor")
    notes = generate_material(music, {"emotion": "sad"}, key, (57, 72), length=200, seed=3)
    assert len(notes) > 5
    assert set(notes[:, 2].astype(int) % 12) <= key.pitch_classes
    assert notes[:, 2].min() >= 57 and notes[:, 2].max() <= 72


def test_melody_follows_the_lyric_constraints(music):
    key, tempo, low, high = Key.parse("g major"), 100.0, 55, 74
    lines = parse_lyrics(TEXT, "en")
    material = generate_material(music, {"emotion": "peaceful"}, key, (low, high), length=300, seed=0)
    sung = compose_melody(lines, material, key, tempo, (low, high), start_bar=1)
    eighth, bar = 30.0 / tempo, 8 * 30.0 / tempo
    assert [s.line for s in sung] == lines
    for index, s in enumerate(sung):
        syllable_notes = [n for n in s.notes if not n.slur]
        assert [n.syllable for n in syllable_notes] == list(s.line.syllables)  # one note (or more) each
        assert s.notes[0].onset == pytest.approx(s.start_bar * bar)  # lines start on a bar line
        for n in s.notes:
            assert low <= n.pitch <= high and n.pitch % 12 in key.pitch_classes
            assert (n.onset / eighth) == pytest.approx(round(n.onset / eighth))  # on the eighth grid
        last = s.notes[-1]
        assert last.duration >= 4 * eighth - 1e-9  # the phrase ends on a long note ...
        assert last.pitch % 12 in key.triad  # ... of the tonic triad
        following = sung[index + 1].notes[0].onset if index + 1 < len(sung) else float("inf")
        assert following - (last.onset + last.duration) >= eighth - 1e-9  # ... and a rest
        # notes of one line never overlap
        ends = [n.onset + n.duration for n in s.notes]
        assert all(e <= nxt.onset + 1e-9 for e, nxt in zip(ends, s.notes[1:], strict=False))
    # the second chorus sings the first chorus's melody
    first, second = sung[2:4], sung[4:6]
    for a, b in zip(first, second, strict=True):
        assert b.reused_from == sung.index(a)
        shift = b.notes[0].onset - a.notes[0].onset
        assert [(n.pitch, n.duration, n.slur) for n in a.notes] == [
            (n.pitch, n.duration, n.slur) for n in b.notes
        ]
        assert [n.onset + shift for n in a.notes] == pytest.approx([n.onset for n in b.notes])


def test_melismas_are_slurred_notes_of_one_syllable(music):
    key = Key.parse("c major")
    lines = parse_lyrics(
        "".join(f"la la la la la la la la la la la la la la la {i}\n" for i in range(3)), "en"
    )
    # material with fast ornaments: pairs of onsets 0.05 s apart
    rows = []
    for i in range(60):
        t = i * 0.6
        rows += [(t, t + 0.05, 60 + (i % 5), 80), (t + 0.05, t + 0.5, 64, 80)]
    sung = compose_melody(lines, np.array(rows, dtype=float), key, 120.0)
    slurs = [n for s in sung for n in s.notes if n.slur]
    assert slurs and all(n.syllable == "" for n in slurs)
    assert len(slurs) <= 0.2 * sum(len(line.syllables) for line in lines) + 1


def test_user_melody_with_too_few_notes_names_the_file():
    lines = parse_lyrics("one two three four", "en")
    melody = [SungNote("", 60 + i, i * 0.5, 0.5) for i in range(3)]
    with pytest.raises(UserError, match=r"my\.mid.*3 notes for 4 syllables"):
        fit_melody(lines, melody, "my.mid")


def test_user_melody_keeps_rhythm_and_intervals_and_slurs_continue_syllables():
    lines = parse_lyrics("one two\nthree", "en")
    melody = [
        SungNote("", 40, 0.0, 0.5),
        SungNote("", 42, 0.5, 0.5),
        SungNote("", 44, 1.0, 0.5, slur=True),
        SungNote("", 45, 2.0, 1.0),
        SungNote("", 47, 3.0, 1.0),  # after the last syllable: left out
    ]
    sung = fit_melody(lines, melody, "tune.mid", (55, 74), tempo=120)
    notes = [n for s in sung for n in s.notes]
    assert [(n.syllable, n.slur) for n in notes] == [
        ("one", False),
        ("two", False),
        ("", True),
        ("three", False),
    ]
    assert [n.pitch - notes[0].pitch for n in notes] == [0, 2, 4, 5]  # moved by octaves only
    assert (notes[0].pitch - 40) % 12 == 0 and 55 <= np.median([n.pitch for n in notes]) <= 74
    assert [n.onset for n in notes] == [0.0, 0.5, 1.0, 2.0]


def test_accompaniment_sits_on_the_sixteenth_grid_and_covers_the_song():
    tempo, bars = 90.0, 6
    sixteenth = 15.0 / tempo
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0, 5.0, 40))
    material = np.stack(
        [onsets, onsets + rng.uniform(0.05, 0.8, 40), rng.integers(40, 60, 40), np.full(40, 70)], 1
    )
    notes = arrange_accompaniment(material, tempo, bars)
    end = bars * 16 * sixteenth
    assert np.allclose(notes[:, 0] / sixteenth, np.round(notes[:, 0] / sixteenth))
    assert (
        notes[:, 1].max() <= end + 1e-9 and notes[:, 0].max() >= end - 16 * sixteenth
    )  # reaches the last bar
    assert np.all(notes[:, 1] > notes[:, 0])


# ------------------------------------------------------------------------------------------------ mix


def test_limiter_gain_never_lets_a_sample_over_the_ceiling():
    rng = np.random.default_rng(1)
    audio = np.clip(rng.normal(0, 0.08, (2, 44100)), -0.45, 0.45)
    audio[:, 20000:20010] = 3.0
    gain = limiter_gain(audio, 44100, 0.5)
    assert np.abs(audio * gain).max() <= 0.5 + 1e-12
    assert gain.max() <= 1.0 and gain[:1000].min() == 1.0  # untouched far from the peak
    assert np.abs(np.diff(gain)).max() < 0.05  # no steps


def test_mix_is_at_minus_14_lufs_never_clips_and_the_stems_sum_to_it():
    sr = 44100
    t = np.arange(4 * sr) / sr
    vocals = 0.05 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    accompaniment = np.stack([0.8 * np.sin(2 * np.pi * 110 * t), 0.7 * np.sin(2 * np.pi * 165 * t)])
    accompaniment[:, sr : sr + 50] = 1.0  # a transient the limiter has to catch
    result = mix_song(vocals, accompaniment, sr)
    assert result.loudness == pytest.approx(-14.0, abs=0.3)
    assert result.peak_db <= -1.0 + 1e-6
    rebuilt = (
        result.gains["vocals"] * result.vocals[None, :] + result.gains["accompaniment"] * result.accompaniment
    )
    assert np.abs(rebuilt - result.song).max() < 1e-5
    # the vocal sits 2 dB above the accompaniment, whatever level it came in at
    v = loudness(result.gains["vocals"] * np.stack([result.vocals, result.vocals]), sr)  # in both channels
    a = loudness(result.gains["accompaniment"] * result.accompaniment, sr)
    assert v - a == pytest.approx(2.0, abs=0.3)
