"""MIDI tokenizers: the performance encoding's round trip, pedal/track handling and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from cinematic.data.tokenizers.midi import (
    BOS,
    EOS,
    PAD,
    PerformanceTokenizer,
    RemiTokenizer,
    load_score,
    make_tokenizer,
    notes_to_score,
)
from cinematic.errors import UserError

TOK = PerformanceTokenizer()


def random_notes(seed: int, count: int = 80, seconds: float = 20.0) -> np.ndarray:
    """Random notes with no two of one pitch overlapping (the encoding has one voice per pitch)."""
    rng = np.random.default_rng(seed)
    rows, busy_until = [], {}
    while len(rows) < count:
        onset = float(rng.uniform(0, seconds))
        pitch = int(rng.integers(21, 109))
        duration = float(rng.choice([rng.uniform(0.01, 0.2), rng.uniform(0.2, 3.5)]))
        if any(start < onset + duration and onset < end for start, end in busy_until.get(pitch, [])):
            continue
        busy_until.setdefault(pitch, []).append((onset, onset + duration))
        rows.append((onset, onset + duration, pitch, int(rng.integers(1, 128))))
    return np.asarray(sorted(rows))


def assert_same_notes(a: np.ndarray, b: np.ndarray) -> None:
    """Same notes, onsets and offsets within 10 ms, velocities within one of the 32 bins."""
    # sort by pitch, then onset: one pitch never overlaps itself, so the order is robust to 10 ms jitter
    a, b = a[np.lexsort((a[:, 0], a[:, 2]))], b[np.lexsort((b[:, 0], b[:, 2]))]
    assert a.shape == b.shape
    assert np.array_equal(a[:, 2], b[:, 2])
    assert np.abs(a[:, :2] - b[:, :2]).max() <= 0.010 + 1e-6
    bins_a = np.array([TOK.velocity_bin(v) for v in a[:, 3]])
    bins_b = np.array([TOK.velocity_bin(v) for v in b[:, 3]])
    assert np.abs(bins_a - bins_b).max() <= 1


def test_vocabulary_is_388_events_plus_pad_bos_eos():
    assert TOK.vocab_size == 388 + 3
    assert (PAD, BOS, EOS) == (0, 1, 2)
    names = [TOK.describe(i) for i in range(TOK.vocab_size)]
    assert sum(n.startswith("NOTE_ON") for n in names) == 128
    assert sum(n.startswith("NOTE_OFF") for n in names) == 128
    assert sum(n.startswith("TIME_SHIFT") for n in names) == 100
    assert sum(n.startswith("VELOCITY") for n in names) == 32
    assert (
        names[TOK.shift_offset] == "TIME_SHIFT_10ms" and names[TOK.velocity_offset - 1] == "TIME_SHIFT_1000ms"
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_midi_file_round_trips(tmp_path, seed):
    notes = random_notes(seed)
    path = tmp_path / "in.mid"
    notes_to_score(notes).dump_midi(str(path))
    ids = TOK.encode(load_score(path))
    out = tmp_path / "out.mid"
    TOK.decode(ids).dump_midi(str(out))
    back = TOK.normalize(load_score(out))
    assert_same_notes(notes, back)
    assert np.array_equal(TOK.encode(load_score(out)), ids)  # encoding a decoded file is a fixed point


def test_demo_midi_files_round_trip(tmp_path):
    from cinematic.data.demo import music_pieces

    for piece in music_pieces(0):
        path = tmp_path / f"{piece.stem}.mid"
        piece.score.dump_midi(str(path))
        score = load_score(path)
        decoded = tmp_path / f"{piece.stem}.out.mid"
        TOK.decode(TOK.encode(score)).dump_midi(str(decoded))
        assert_same_notes(TOK.normalize(score), TOK.normalize(load_score(decoded)))


def test_tempo_changes_are_followed_in_seconds():
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 60.0))  # one quarter = 1 s
    score.tempos.append(symusic.Tempo(960, 120.0))  # from 2 s: one quarter = 0.5 s
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, 480, 60, 80))
    track.notes.append(symusic.Note(960, 480, 62, 80))
    score.tracks.append(track)
    notes = TOK.normalize(score)
    np.testing.assert_allclose(notes[:, :2], [[0.0, 1.0], [2.0, 2.5]], atol=1e-6)


def test_sustain_pedal_extends_released_notes_until_it_lifts_or_the_pitch_returns(tmp_path):
    score = notes_to_score(
        np.array([[0.0, 0.5, 60, 80], [0.2, 0.4, 64, 80], [0.3, 0.6, 64, 80], [2.0, 2.2, 67, 80]])
    )
    score.tracks[0].controls.append(symusic.ControlChange(100, 64, 127))  # pedal down at 0.1 s
    score.tracks[0].controls.append(symusic.ControlChange(1500, 64, 0))  # up at 1.5 s
    score.dump_midi(str(tmp_path / "pedal.mid"))  # symusic turns CC 64 into pedals when it reads a file
    notes = TOK.normalize(load_score(tmp_path / "pedal.mid"))
    by_onset = {round(n[0], 2): n for n in notes}
    assert by_onset[0.0][1] == pytest.approx(1.5)  # sustained to the pedal release
    assert by_onset[0.2][1] == pytest.approx(0.3)  # cut when 64 is struck again
    assert by_onset[0.3][1] == pytest.approx(1.5)
    assert by_onset[2.0][1] == pytest.approx(2.2)  # after the pedal: unchanged


def test_tracks_are_merged_and_drums_dropped():
    score = notes_to_score(np.array([[0.0, 1.0, 60, 80]]))
    strings = symusic.Track(program=48)
    strings.notes.append(symusic.Note(500, 500, 72, 90))
    drums = symusic.Track(program=0, is_drum=True)
    drums.notes.append(symusic.Note(0, 100, 36, 100))
    score.tracks.append(strings)
    score.tracks.append(drums)
    notes = TOK.normalize(score)
    assert notes[:, 2].tolist() == [60, 72]


def test_long_gaps_become_several_time_shifts():
    ids = TOK.encode(notes_to_score(np.array([[2.5, 2.6, 60, 64]])))
    names = [TOK.describe(i) for i in ids]
    assert names[:3] == ["TIME_SHIFT_1000ms", "TIME_SHIFT_1000ms", "TIME_SHIFT_500ms"]
    assert TOK.seconds(ids) == pytest.approx(2.6)


def test_decoding_tolerates_what_a_sampler_may_emit():
    off = TOK.note_off_offset
    on = TOK.note_on_offset
    shift = TOK.shift_offset
    ids = [BOS, off + 50, on + 60, shift + 9, on + 60, shift + 9, PAD, on + 62, EOS, on + 70]
    notes = TOK.decode_notes(ids)
    # the orphan note-off is ignored, the re-struck 60 restarts, the note after EOS is never read,
    # notes still sounding at the end get the minimum 10 ms
    assert notes[:, 2].tolist() == [60, 60, 62]
    np.testing.assert_allclose(notes[:, :2], [[0.0, 0.1], [0.1, 0.2], [0.2, 0.21]])


def test_transpose_shifts_notes_and_refuses_to_leave_the_piano_range():
    ids = TOK.encode(notes_to_score(np.array([[0.0, 0.5, 100, 80], [0.1, 0.3, 40, 80]])))
    up = TOK.transpose(ids, 3)
    assert sorted(TOK.decode_notes(up)[:, 2].tolist()) == [43, 103]
    assert TOK.transpose(ids, 9) is None  # 109 > C8
    assert TOK.transpose(ids, -20) is None  # 20 < A0


def test_time_stretch_scales_the_time_line_without_drift():
    notes = random_notes(3, count=40)
    ids = TOK.encode(notes_to_score(notes))
    for factor in (0.95, 1.05):
        stretched = TOK.decode_notes(TOK.stretch(ids, factor))
        expected = TOK.normalize(notes_to_score(notes)).copy()
        expected[:, :2] *= factor
        assert np.abs(stretched[:, :2] - expected[:, :2]).max() <= 0.0101
        assert TOK.seconds(TOK.stretch(ids, factor)) == pytest.approx(TOK.seconds(ids) * factor, abs=0.011)


def test_unreadable_midi_is_a_user_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(UserError, match="broken.mid"):
        load_score(bad)
    with pytest.raises(UserError, match="remi"):
        make_tokenizer("abc")


def test_remi_tokenizer_keeps_the_notes_and_transposes():
    remi = RemiTokenizer()
    notes = np.array([[0.0, 0.5, 60, 80], [0.5, 1.0, 64, 80], [1.0, 2.0, 67, 100]])
    ids = remi.encode(notes_to_score(notes))
    decoded = remi.decode(ids)
    assert sorted(n.pitch for n in decoded.tracks[0].notes) == [60, 64, 67]
    up = remi.decode(remi.transpose(ids, 2))
    assert sorted(n.pitch for n in up.tracks[0].notes) == [62, 66, 69]
    assert remi.seconds(ids) == pytest.approx(2.0, abs=0.05)
