from __future__ import annotations

import json

import numpy as np
import pytest

from cinematic.configs.model_config import MelConfig
from cinematic.data.audio import save_audio
from cinematic.data.preprocessing import load_features, preprocess_music, preprocess_voice, read_manifest

MEL = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=40, fmax=8000)


def tone(freq: float, seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def voice_dir(tmp_path):
    root = tmp_path / "voice"
    (root / "amy").mkdir(parents=True)
    for i, freq in enumerate([200, 250]):
        save_audio(root / "amy" / f"u{i}.wav", tone(freq, 0.5, 22050), 22050)
        (root / "amy" / f"u{i}.txt").write_text(f"utterance {i}")
    (root / "amy" / "broken.wav").write_bytes(b"RIFF not really")
    (root / "amy" / "broken.txt").write_text("broken")
    return root


def test_voice_features_are_frame_aligned_cached_and_failures_recorded(voice_dir, tmp_path):
    work = tmp_path / "work"
    manifest, records = preprocess_voice(voice_dir, MEL, work, workers=2, progress=False)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert by_name["broken.wav"]["status"] == "failed" and "broken.wav" in by_name["broken.wav"]["reason"]
    good = by_name["u1.wav"]
    assert good["status"] == "ok" and not good["cached"] and good["speaker"] == "amy"
    features = load_features(good)
    frames = features["mel"].shape[-1]
    assert features["mel"].shape == (40, 8000 // 128) and len(features["audio"]) == 8000
    assert features["pitch"].shape == features["energy"].shape == (frames,)
    voiced = features["pitch"][features["pitch"] > 0]
    assert len(voiced) > frames // 2 and np.median(voiced) == pytest.approx(250, rel=0.01)
    assert [json.loads(line)["path"] for line in manifest.read_text().splitlines()] == [
        r["path"] for r in records
    ]

    _, again = preprocess_voice(voice_dir, MEL, work, workers=1, progress=False)
    assert [r.get("cached") for r in again] == [False, True, True]  # broken first (sorted), others reused
    changed = MEL.model_copy(update={"n_mels": 32})
    _, other = preprocess_voice(voice_dir, changed, work, workers=1, progress=False)
    assert not other[1]["cached"] and load_features(other[1])["mel"].shape[0] == 32


def test_music_preprocessing_validates_midi_and_extracts_mels(tmp_path):
    import symusic

    root = tmp_path / "music"
    root.mkdir()
    score = symusic.Score(480)
    track = symusic.Track()
    for i in range(4):
        track.notes.append(symusic.Note(i * 480, 480, 60 + i, 90))
    score.tracks.append(track)
    score.dump_midi(str(root / "a.mid"))
    (root / "b.mid").write_bytes(b"MThd garbage")
    save_audio(root / "c.wav", tone(440, 0.3, 16000), 16000)
    (root / "c.json").write_text('{"emotion": "calm"}')
    manifest, records = preprocess_music(root, MEL, tmp_path / "work", workers=1, progress=False)
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert records[0]["notes"] == 4 and records[0]["duration"] == pytest.approx(2.0, rel=0.05)
    assert records[2]["labels"] == {"emotion": "calm"} and records[2]["frames"] == 4800 // 128
    assert read_manifest(manifest) == records


def test_preprocess_command_reports_and_exits_zero(voice_dir, tmp_path, capsys):
    from cinematic.cli import main

    code = main(
        [
            "data",
            "preprocess",
            "voice",
            str(voice_dir),
            "--work_dir",
            str(tmp_path / "w"),
            "--workers",
            "1",
            "--config",
            "tiny",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "2 ok" in out and "1 failed" in out and "broken.wav" in out
    assert (
        main(["data", "preprocess", "voice", str(tmp_path / "nowhere"), "--work_dir", str(tmp_path / "w")])
        == 2
    )
