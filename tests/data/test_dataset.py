from __future__ import annotations

import logging

import numpy as np

from cinematic.data.audio import save_audio
from cinematic.data.dataset import read_lyrics_dir, read_music_dir, read_voice_dir

TONE = np.zeros(800, dtype=np.float32)


def test_music_reader_pairs_files_with_labels_and_survives_bad_json(tmp_path, caplog):
    (tmp_path / "b.mid").write_bytes(b"MThd")
    (tmp_path / "b.json").write_text('{"emotion": "epic", "genre": "orchestral", "mood_extra": 3}')
    save_audio(tmp_path / "a.wav", TONE, 8000)
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING):
        items = read_music_dir(tmp_path)
    assert [(i.path.name, i.kind) for i in items] == [("a.wav", "audio"), ("b.mid", "midi")]
    assert items[0].labels == {} and "a.json" in caplog.text
    assert items[1].labels == {"emotion": "epic", "genre": "orchestral", "mood_extra": 3}


def test_seed_voice_layout_reads_speaker_json_and_skips_missing_transcripts(tmp_path, caplog):
    for speaker, lang in [("bob", "en"), ("ana", "es")]:
        (tmp_path / speaker).mkdir()
        (tmp_path / speaker / "speaker.json").write_text(f'{{"language": "{lang}", "gender": "x"}}')
        for n in range(2):
            save_audio(tmp_path / speaker / f"u{n}.wav", TONE, 8000)
            (tmp_path / speaker / f"u{n}.txt").write_text(f"hello {speaker} {n}\n")
    (tmp_path / "bob" / "u1.txt").unlink()
    with caplog.at_level(logging.WARNING):
        utts = read_voice_dir(tmp_path)
    assert [(u.speaker, u.audio_path.name, u.language) for u in utts] == [
        ("ana", "u0.wav", "es"),
        ("ana", "u1.wav", "es"),
        ("bob", "u0.wav", "en"),
    ]
    assert utts[0].text == "hello ana 0" and utts[0].meta["gender"] == "x"
    assert "u1.wav" in caplog.text


def test_ljspeech_layout_is_detected(tmp_path):
    (tmp_path / "wavs").mkdir()
    for name in ["LJ001-0001", "LJ001-0002"]:
        save_audio(tmp_path / "wavs" / f"{name}.wav", TONE, 8000)
    (tmp_path / "metadata.csv").write_text(
        'LJ001-0002|Raw "two" 2|Normalized "two" two\nLJ001-0001|Raw one 1|\nLJ009-9999|gone|gone\n'
    )
    utts = read_voice_dir(tmp_path)
    assert [(u.audio_path.name, u.text) for u in utts] == [
        ("LJ001-0001.wav", "Raw one 1"),
        ("LJ001-0002.wav", 'Normalized "two" two'),
    ]
    assert {u.language for u in utts} == {"en"}


def test_vctk_layout_is_detected_and_reads_speaker_info(tmp_path):
    for spk in ["p225", "p226"]:
        (tmp_path / "wav48_silence_trimmed" / spk).mkdir(parents=True)
        (tmp_path / "txt" / spk).mkdir(parents=True)
        for mic in ["mic1", "mic2"]:
            save_audio(tmp_path / "wav48_silence_trimmed" / spk / f"{spk}_001_{mic}.flac", TONE, 8000)
        (tmp_path / "txt" / spk / f"{spk}_001.txt").write_text(f"Please call {spk}.")
    (tmp_path / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\np225  23  F  English  Southern\n"
    )
    utts = read_voice_dir(tmp_path)
    assert [(u.speaker, u.audio_path.name) for u in utts] == [
        ("p225", "p225_001_mic1.flac"),
        ("p226", "p226_001_mic1.flac"),
    ]
    assert utts[0].meta["gender"] == "F" and utts[1].text == "Please call p226."


def test_lyrics_reader_uses_language_folders(tmp_path):
    for lang in ["es", "en"]:
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "song.txt").write_text(f"[verse]\nla la {lang}\n")
    (tmp_path / "es" / "song.json").write_text('{"emotion": "sad"}')
    songs = read_lyrics_dir(tmp_path)
    assert [(s.language, s.labels) for s in songs] == [("en", {}), ("es", {"emotion": "sad"})]
    assert songs[1].text == "[verse]\nla la es"
