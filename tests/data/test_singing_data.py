"""Singing data: song JSON, openvpi and Opencpop readers, melodies from MusicXML and MIDI, the phoneme track,
and the demo singers (they follow their melodies, deterministically)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cinematic.data.singing import (
    REST,
    SingingItem,
    SongPiece,
    SungFeatureCache,
    SungNote,
    alignment_prior,
    augmented_pieces,
    check_notes,
    fit_durations,
    hz_to_midi,
    phoneme_track,
    read_melody,
    read_singing_dir,
    read_song,
    shift_voice,
    split_song,
    write_song,
)
from cinematic.errors import UserError


def _touch_wav(path: Path) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(2205, np.float32), 22050)


def test_song_json_round_trip_keeps_notes_and_phoneme_durations(tmp_path):
    notes = [
        SungNote("la", 60, 0.1, 0.5, phonemes=("l", "a")),
        SungNote("", 62, 0.6, 0.25, slur=True),
        SungNote("sol", 64, 1.0, 0.5),
    ]
    write_song(
        tmp_path / "s.json",
        notes,
        language="es",
        extra={"tempo": 90},
        phoneme_durations=[(0.1, 0.4), None, None],
    )
    read, meta, durations = read_song(tmp_path / "s.json")
    assert read == notes
    assert meta == {"language": "es", "tempo": 90}
    assert durations == [(0.1, 0.4), None, None]


def test_seed_layout_reads_singers_and_languages(tmp_path):
    root = tmp_path / "singing"
    _touch_wav(root / "alto" / "a.wav")
    write_song(root / "alto" / "a.json", [SungNote("hi", 67, 0.0, 0.4)])
    (root / "alto" / "singer.json").write_text(json.dumps({"language": "en"}))
    items = read_singing_dir(root)
    assert [(i.singer, i.language, i.notes[0].pitch) for i in items] == [("alto", "en", 67)]


def test_openvpi_transcriptions_give_notes_slurs_and_durations(tmp_path):
    root = tmp_path / "opencsv" / "tenor"
    _touch_wav(root / "wavs" / "take1.wav")
    (root / "transcriptions.csv").write_text(
        "name,ph_seq,ph_dur,ph_num,note_seq,note_dur,note_slur\n"
        "take1,SP l a a SP,0.2 0.1 0.4 0.3 0.2,1 2 1 1,rest C4 D4 rest,0.2 0.5 0.3 0.2,0 0 1 0\n"
    )
    items = read_singing_dir(tmp_path / "opencsv")
    assert len(items) == 1 and items[0].singer == "tenor"
    notes = items[0].notes
    assert [(n.pitch, n.slur, n.phonemes) for n in notes] == [(60, False, ("l", "a")), (62, True, None)]
    assert notes[0].onset == pytest.approx(0.2) and notes[1].onset == pytest.approx(0.7)
    assert items[0].phoneme_durations[0] == pytest.approx((0.1, 0.4))


def test_opencpop_transcriptions_group_phonemes_into_notes(tmp_path):
    root = tmp_path / "opencpop"
    _touch_wav(root / "wavs" / "2001.wav")
    (root / "transcriptions.txt").write_text(
        "2001|你好|SP n i h ao ao SP|rest C4 C4 D4 D4 E4 rest|0.2 0.4 0.4 0.5 0.5 0.3 0.2|"
        "0.2 0.1 0.3 0.1 0.4 0.3 0.2|0 0 0 0 0 1 0\n"
    )
    (item,) = read_singing_dir(root)
    assert item.language == "zh"
    assert [(n.pitch, n.slur, n.phonemes) for n in item.notes] == [
        (60, False, ("n", "i")),
        (62, False, ("h", "ao")),
        (64, True, None),
    ]
    assert [n.onset for n in item.notes] == pytest.approx([0.2, 0.6, 1.1])


def test_readers_name_the_file_on_bad_input(tmp_path):
    root = tmp_path / "bad"
    _touch_wav(root / "wavs" / "x.wav")
    (root / "transcriptions.csv").write_text("name,ph_seq\nx,a\n")
    with pytest.raises(UserError, match=r"transcriptions\.csv.*missing"):
        read_singing_dir(root)
    song = tmp_path / "s" / "v" / "a.json"
    _touch_wav(song.with_suffix(".wav"))
    song.write_text('{"notes": [{"pitch": "H9", "onset": 0, "duration": 1}]}')
    with pytest.raises(UserError, match=r"a\.json.*not a note name"):
        read_singing_dir(tmp_path / "s")
    with pytest.raises(UserError, match="no sung recordings"):
        read_singing_dir(tmp_path / "s" / "v")
    with pytest.raises(UserError, match="no notes"):
        check_notes([], "melody.json")


def test_musicxml_melody_with_lyrics_tempo_ties_and_melisma(tmp_path):
    import music21

    part = music21.stream.Part()
    part.append(music21.tempo.MetronomeMark(number=120))
    for pitch, lyric, length in [
        ("C4", "hel", 1.0),
        ("D4", "lo", 1.0),
        ("E4", None, 0.5),
        ("G4", "world", 2.0),
    ]:
        n = music21.note.Note(pitch, quarterLength=length)
        if lyric:
            n.lyric = lyric
        part.append(n)
    path = tmp_path / "m.musicxml"
    music21.stream.Score([part]).write("musicxml", fp=str(path))
    notes = read_melody(path)
    assert [(n.syllable, n.pitch, n.slur) for n in notes] == [
        ("hel", 60, False),
        ("lo", 62, False),
        ("", 64, True),
        ("world", 67, False),
    ]
    assert [n.onset for n in notes] == pytest.approx([0.0, 0.5, 1.0, 1.25])
    assert notes[-1].duration == pytest.approx(1.0)
    bare = tmp_path / "bare.musicxml"
    music21.stream.Score([music21.stream.Part([music21.note.Note("C4")])]).write("musicxml", fp=str(bare))
    with pytest.raises(UserError, match=r"bare\.musicxml.*lyrics"):
        read_melody(bare)


def test_midi_melody_takes_lyric_meta_events(tmp_path):
    import symusic

    score = symusic.Score(480)
    track = symusic.Track("voice", 0, False)
    for i, (pitch, text) in enumerate([(60, "sun"), (62, "shine"), (64, None)]):
        track.notes.append(symusic.Note(i * 480, 480, pitch, 90))
        if text:
            track.lyrics.append(symusic.TextMeta(i * 480, text))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 120))
    path = tmp_path / "m.mid"
    score.dump_midi(str(path))
    notes = read_melody(path)
    assert [(n.syllable, n.pitch, n.slur) for n in notes] == [
        ("sun", 60, False),
        ("shine", 62, False),
        ("", 64, True),
    ]
    assert [n.onset for n in notes] == pytest.approx([0.0, 0.5, 1.0])
    empty = symusic.Score(480)
    t = symusic.Track("v", 0, False)
    t.notes.append(symusic.Note(0, 480, 60, 90))
    empty.tracks.append(t)
    empty.dump_midi(str(tmp_path / "nolyrics.mid"))
    with pytest.raises(UserError, match=r"nolyrics\.mid.*lyric"):
        read_melody(tmp_path / "nolyrics.mid")


def test_phoneme_track_tiles_the_timeline_and_slurs_hold_the_vowel():
    notes = [
        SungNote("la", 60, 0.5, 0.5),
        SungNote("", 62, 1.0, 0.5, slur=True),
        SungNote("mi", 64, 1.75, 0.5),
    ]
    track = phoneme_track(notes, [("l", "a"), (), ("m", "i")], 100.0, total_frames=260)
    assert track.symbols == [REST, "l", "a", "a", REST, "m", "i", REST]
    assert track.pitch == [0, 60, 60, 62, 0, 64, 64, 0]
    assert track.slur == [0, 0, 0, 1, 0, 0, 0, 0]
    assert track.group_frames == [50, 50, 50, 25, 50, 35]
    assert track.total_frames == 260
    prior = alignment_prior(track)
    assert prior.shape == (260, 8)
    best = prior.argmax(1)  # every frame prefers a phoneme of its own note
    groups = np.repeat(np.arange(6), track.group_frames)
    assert (np.array(track.group)[best] == groups).all()


def test_fit_durations_fill_exactly_and_keep_one_frame_each():
    assert sum(fit_durations([0.1, 5.0, 0.1], 20)) == 20
    assert min(fit_durations([0.0, 9.0, 0.0], 3)) == 1
    assert fit_durations([1, 3], 8) == [2, 6]


def test_long_songs_are_cut_in_rests():
    notes = [SungNote(f"s{i}", 60, i * 1.0 + (0.5 if i >= 5 else 0.0), 0.8) for i in range(10)]
    item = SingingItem(Path("x.wav"), "a", "en", notes)
    pieces = split_song(item, "en", [("a",)] * 10, max_seconds=6.0)
    assert len(pieces) == 2
    assert sum(len(p.notes) for p in pieces) == 10
    assert pieces[1].start == pytest.approx((4.8 + 5.5) / 2)
    assert pieces[1].notes[0].onset == pytest.approx(5.5 - pieces[1].start)


def test_demo_singers_follow_their_melodies_and_are_deterministic(tmp_path):
    from cinematic.data.audio import pitch_praat
    from cinematic.data.demo import espeak_binary
    from cinematic.data.demo_singing import SINGERS, singing_jobs, write_demo_song

    jobs = singing_jobs(0)
    assert len(jobs) == len(SINGERS) * 10 and len({s.language for s in SINGERS}) >= 2
    binary = espeak_binary()
    registers = {}
    for job in [next(j for j in jobs if j.singer == s) for s in SINGERS]:
        write_demo_song(binary, job, tmp_path)
        import soundfile as sf

        wav, sr = sf.read(str(tmp_path / f"{job.stem}.wav"), dtype="float32")
        assert 2.5 < len(wav) / sr < 8.0
        f0 = pitch_praat(wav, sr, 256)
        times = (np.arange(len(f0)) + 0.5) * 256 / sr
        cents, inside, voiced = [], 0, 0
        for note in job.notes:
            frames = (times > note.onset + 0.03) & (times < note.onset + note.duration - 0.03)
            inside += frames.sum()
            voiced += (frames & (f0 > 0)).sum()
            cents += list(np.abs(hz_to_midi(f0[frames & (f0 > 0)]) - note.pitch) * 100)
        assert np.median(cents) < 35, job.stem
        assert voiced / inside > 0.7, job.stem
        registers[job.singer.name] = np.median(hz_to_midi(f0[f0 > 0]))
        notes, _, durations = read_song(tmp_path / f"{job.stem}.json")
        for note, durs in zip(notes, durations, strict=True):
            if not note.slur:
                assert len(durs) == len(note.phonemes) and sum(durs) == pytest.approx(note.duration, abs=2e-3)
    assert registers["en_ava"] - registers["en_leo"] > 6  # a soprano and a baritone
    first = (tmp_path / f"{jobs[0].stem}.wav").read_bytes()
    write_demo_song(binary, singing_jobs(0)[0], tmp_path / "again")
    assert (tmp_path / "again" / f"{jobs[0].stem}.wav").read_bytes() == first


def test_augmented_pieces_are_virtual_singers_and_transposed_songs():
    notes = [SungNote("la", 60, 0.1, 0.5, phonemes=("l", "a")), SungNote("", 62, 0.6, 0.3, slur=True)]
    piece = SongPiece(Path("a.wav"), "alto", "en", 0.0, None, notes, [("l", "a"), ()], None)
    out = augmented_pieces([piece], [0.9, 1.0, 1.1], [-3, 0, 4])
    assert [(p.singer, p.shift) for p in out] == [
        ("alto@formant0.9", (0.9, 0)),
        ("alto@formant1.1", (1.1, 0)),
        ("alto", (1.0, -3)),
        ("alto", (1.0, 4)),
    ]
    assert [n.pitch for n in out[0].notes] == [60, 62]  # a virtual singer sings the same notes
    assert [n.pitch for n in out[3].notes] == [64, 66] and out[3].notes[1].slur
    assert piece.shift == (1.0, 0) and augmented_pieces([piece], [], []) == []


def test_shifted_recordings_move_pitch_or_formants_and_keep_their_length(demo_data):
    from cinematic.configs.model_config import MelConfig
    from cinematic.data.audio import load_audio, pitch_praat

    path = sorted((demo_data / "singing" / "en_leo").glob("*.wav"))[0]
    wav, sr = load_audio(path, sample_rate=22050)
    f0 = pitch_praat(wav, sr, 256)
    up = shift_voice(wav, sr, semitones=4)
    assert len(up) == len(wav)
    moved = pitch_praat(up, sr, 256)[: len(f0)]
    both = (f0 > 0) & (moved > 0)
    assert both.sum() > 0.8 * (f0 > 0).sum()
    assert np.median(hz_to_midi(moved[both]) - hz_to_midi(f0[both])) == pytest.approx(4.0, abs=0.2)

    def centroid(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x))
        return float((spectrum * np.fft.rfftfreq(len(x), 1 / sr)).sum() / spectrum.sum())

    brighter = shift_voice(wav, sr, formant_ratio=1.15)
    kept = pitch_praat(brighter, sr, 256)[: len(f0)]
    both = (f0 > 0) & (kept > 0)
    assert abs(np.median(hz_to_midi(kept[both]) - hz_to_midi(f0[both]))) < 0.2  # the pitch stays
    assert centroid(brighter) > 1.05 * centroid(wav)  # the formants go up
    assert shift_voice(wav, sr) is wav

    # the feature cache takes a transposed piece's features from the shifted recording
    notes, meta, durations = read_song(path.with_suffix(".json"))
    piece = SongPiece(path, "en_leo", "en", 0.0, None, notes, [n.phonemes or () for n in notes], durations)
    cache = SungFeatureCache(None, MelConfig(), None)
    plain = cache.get(piece)
    (high,) = augmented_pieces([piece], [], [4])
    shifted = cache.get(high)
    voiced = plain.voiced & shifted.voiced
    assert np.median(shifted.f0[voiced] - plain.f0[voiced]) == pytest.approx(4.0, abs=0.2)
    assert shifted.mel.shape == plain.mel.shape
