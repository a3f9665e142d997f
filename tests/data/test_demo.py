"""`cinematic data demo`: layout, validity, determinism, and labels the notes actually follow."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import soundfile as sf
import symusic

from cinematic.data import demo
from cinematic.errors import UserError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _music(demo_data: Path) -> list[tuple[Path, dict, symusic.Score]]:
    return [
        (mid, json.loads(mid.with_suffix(".json").read_text("utf-8")), symusic.Score(str(mid)))
        for mid in sorted((demo_data / "music").glob("*.mid"))
    ]


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files_in_another_folder(demo_data, tmp_path):
    again = tmp_path / "elsewhere" / "deeper"
    demo.write_demo_data(again, seed=0)
    first, second = _tree(demo_data), _tree(again)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"files differ between runs: {different[:5]}"
    assert not any(str(demo_data).encode() in data for data in first.values())


def test_another_seed_changes_notes_voices_and_lyrics():
    notes = [p.score.dumps_midi() for p in demo.music_pieces(0)]
    assert notes != [p.score.dumps_midi() for p in demo.music_pieces(1)]
    assert [j.text for j in demo.voice_jobs(0)] != [j.text for j in demo.voice_jobs(1)]
    assert [s[2] for s in demo.lyric_songs(0)] != [s[2] for s in demo.lyric_songs(1)]


# ------------------------------------------------------------------------------------------------ audio


def test_every_wav_is_readable_at_its_rate_and_neither_silent_nor_clipped(demo_data):
    wavs = sorted(demo_data.rglob("*.wav"))
    assert len(wavs) == 12 + 4 * 12 + 4 * 10  # music, voice, singing
    for path in wavs:
        info = sf.info(str(path))
        music = path.parent.name == "music"
        assert info.samplerate == (44100 if music else 22050), path
        assert info.channels == (2 if music else 1), path
        assert info.subtype == "PCM_16", path
        audio, _ = sf.read(str(path), dtype="float32")
        assert np.sqrt(np.mean(audio**2)) > 0.01, f"{path} is (nearly) silent"
        assert np.abs(audio).max() < 0.999, f"{path} clips"


def test_music_pieces_last_8_to_16_seconds_and_midi_matches_wav(demo_data):
    for mid, labels, score in _music(demo_data):
        seconds = score.to("second").end()
        assert 8.0 <= seconds <= 16.0 + 0.01, mid
        assert labels["duration"] == pytest.approx(seconds, abs=0.05)
        frames = sf.info(str(mid.with_suffix(".wav"))).frames
        assert seconds < frames / 44100 <= seconds + 1.5, mid  # the rendering plus its release tail


# ---------------------------------------------------------------------------------------------- music


def test_every_midi_parses_and_has_labels(demo_data):
    pieces = _music(demo_data)
    assert len(pieces) == 12
    for mid, labels, score in pieces:
        assert score.note_num() > 10, mid
        for key in demo.MUSIC_LABEL_KEYS:
            assert labels.get(key) not in (None, "", []), f"{mid.with_suffix('.json')} lacks {key}"
        assert isinstance(labels["tempo"], int) and len(labels["instruments"]) == len(score.tracks)
        assert len(labels["scene"].split()) >= 4  # a sentence, not a tag
    assert len({labels["emotion"] for _, labels, _ in pieces}) >= 4
    assert len({labels["genre"] for _, labels, _ in pieces}) >= 2


def test_midi_exercises_pedal_multitrack_and_drums(demo_data):
    pieces = _music(demo_data)
    assert any(len(t.pedals) for _, _, s in pieces for t in s.tracks)  # CC64 read back as pedals
    assert any(sum(not t.is_drum for t in s.tracks) >= 2 for _, _, s in pieces)
    assert any(len(s.tracks) == 1 for _, _, s in pieces)
    assert any(t.is_drum and len(t.notes) for _, _, s in pieces for t in s.tracks)


def _scale_share(score: symusic.Score, key: str) -> float:
    """Share of pitched notes whose pitch class lies in the scale the key label names."""
    tonic_name, mode = key.split()
    tonic = demo.NOTE_NAMES.index(tonic_name)
    scale = set(demo.SCALES[mode])
    if mode == "minor":
        scale.add(11)  # harmonic minor: the dominant's leading tone
    if mode == "major":
        scale.add(10)  # the epic ♭VII chord (mixolydian borrowing)
    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in score.tracks if not t.is_drum])
    return float(np.mean([(int(p) - tonic) % 12 in scale for p in pitches]))


def test_notes_follow_key_tempo_and_emotion_labels(demo_data):
    by_emotion: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for mid, labels, score in _music(demo_data):
        assert _scale_share(score, labels["key"]) >= 0.9, f"{mid.name}: notes outside {labels['key']}"
        assert score.tempos[0].qpm == pytest.approx(labels["tempo"], abs=0.01)
        pitched = [t.notes.numpy() for t in score.tracks if not t.is_drum]
        melody = pitched[0]["pitch"].astype(float)
        velocity = np.concatenate([n["velocity"] for n in pitched]).astype(float)
        by_emotion[labels["emotion"]].append((labels["tempo"], velocity.mean(), melody.mean()))
    mean = {emotion: np.mean(values, axis=0) for emotion, values in by_emotion.items()}
    tempo, loud = 0, 1
    for bright in ("triumphant", "epic"):
        assert mean["sad"][tempo] < mean[bright][tempo]
        assert mean["sad"][loud] + 20 < mean[bright][loud]
        assert mean["peaceful"][loud] + 20 < mean[bright][loud]
    assert mean["sad"][tempo] < mean["tense"][tempo]
    keys = {labels["emotion"]: labels["key"] for _, labels, _ in _music(demo_data)}
    assert keys["sad"].endswith("minor") and keys["triumphant"].endswith("major")
    assert keys["tense"].endswith("diminished") and keys["peaceful"].endswith("major")


# ---------------------------------------------------------------------------------------------- voice


def _median_f0(path: Path) -> float:
    audio, rate = sf.read(str(path), dtype="float64")
    f0 = parselmouth.Sound(audio, sampling_frequency=rate).to_pitch().selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def test_voice_has_speakers_transcripts_and_distinct_voices(demo_data):
    speakers = sorted(p for p in (demo_data / "voice").iterdir() if p.is_dir())
    assert len(speakers) >= 3
    languages, pitch = set(), {}
    for folder in speakers:
        meta = json.loads((folder / "speaker.json").read_text("utf-8"))
        assert meta["language"] in {"en", "es", "fr", "de"} and meta["gender"] in {"female", "male"}
        languages.add(meta["language"])
        wavs = sorted(folder.glob("*.wav"))
        assert len(wavs) >= 12
        for wav in wavs:
            assert wav.with_suffix(".txt").read_text("utf-8").strip(), f"{wav} has no transcript"
            assert 0.8 <= sf.info(str(wav)).duration <= 3.5, wav
        pitch[folder.name] = (meta["gender"], _median_f0(wavs[0]))
    assert len(languages) >= 2
    female = [f0 for gender, f0 in pitch.values() if gender == "female"]
    male = [f0 for gender, f0 in pitch.values() if gender == "male"]
    assert min(female) > 1.3 * max(male), pitch  # the voices differ audibly


def test_missing_espeak_is_a_user_error_saying_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        demo.write_demo_data(tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing half-written


# --------------------------------------------------------------------------------------------- lyrics


def test_lyrics_cover_four_languages_with_structure_and_labels(demo_data):
    counts = {}
    for language in ("en", "es", "fr", "de"):
        songs = sorted((demo_data / "lyrics" / language).glob("*.txt"))
        counts[language] = len(songs)
        emotions = set()
        for song in songs:
            text = song.read_text("utf-8")
            assert "[verse]" in text and "[chorus]" in text and text.count("\n") >= 10, song
            labels = json.loads(song.with_suffix(".json").read_text("utf-8"))
            assert all(labels.get(key) for key in demo.LABEL_KEYS), song
            emotions.add(labels["emotion"])
        assert len(emotions) >= 3, language
    assert counts["en"] > counts["de"] >= 5  # imbalanced on purpose, for the balancing tools


def test_lyrics_are_in_their_language():
    function_words = {
        "en": {"the", "and", "i", "my", "we", "a"},
        "es": {"el", "y", "que", "los", "las", "mi", "en"},
        "fr": {"le", "et", "je", "les", "du", "dans", "une"},
        "de": {"der", "die", "das", "und", "ich", "wir", "ein"},
    }
    for language, _, text, _ in demo.lyric_songs(0):
        words = text.lower().replace(",", " ").split()
        hits = {
            lang: sum(word in vocabulary for word in words) for lang, vocabulary in function_words.items()
        }
        assert max(hits, key=hits.get) == language, (language, hits)


# ------------------------------------------------------------------------------------------------ CLI


def test_refuses_a_folder_with_other_data(tmp_path):
    (tmp_path / "mine.wav").write_bytes(b"not demo data")
    with pytest.raises(UserError, match="not made by `cinematic data demo`"):
        demo.write_demo_data(tmp_path)
    assert (tmp_path / "mine.wav").read_bytes() == b"not demo data"


def test_demo_command_prints_a_summary(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake(out_dir, seed=0, progress=None):
        seen.update(out_dir=out_dir, seed=seed)
        return {"out_dir": str(out_dir), "music": 12, "speakers": 4, "utterances": 48,
                "songs": {"en": 13, "de": 7}, "seconds": 1.0}  # fmt: skip

    monkeypatch.setattr(demo, "write_demo_data", fake)
    assert demo.demo_command(argparse.Namespace(out_dir=str(tmp_path), seed=7)) == 0
    assert seen == {"out_dir": tmp_path, "seed": 7}
    out = capsys.readouterr().out
    assert "12 MIDI pieces" in out and "4 speakers × 12 utterances" in out and "20 songs" in out
