from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from cinematic.data.audio import integrated_loudness, load_audio
from cinematic.data.cleaning import clean_folder

SR = 44100


def music_clip(seconds: float = 1.0, seed: int = 0, lufs: float = -14.0, sample_rate: int = SR) -> np.ndarray:
    """A chord with a moving envelope and a little noise, scaled to `lufs`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = 180 + 40 * seed
    x = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6)) / k for k in (1, 1.5, 2, 3))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * (1.5 + seed) * t)) + 0.02 * rng.standard_normal(len(t))
    x = (x / np.abs(x).max() * 0.5).astype(np.float32)
    return x * np.float32(10 ** ((lufs - integrated_loudness(x, sample_rate)) / 20))


def write(path, audio, sample_rate=SR, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.T if audio.ndim == 2 else audio, sample_rate, subtype=subtype)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    music = root / "music"
    music.mkdir(parents=True)
    write(music / "good.wav", music_clip(seed=0))
    (music / "good.json").write_text('{"emotion": "calm"}')
    (music / "zero.wav").write_bytes(b"")
    good_bytes = (music / "good.wav").read_bytes()
    (music / "truncated.wav").write_bytes(good_bytes[:30])
    (music / "text.wav").write_text("this is not audio\n")
    nan = music_clip(seed=1)
    nan[100:200] = np.nan
    write(music / "nan.wav", nan, subtype="FLOAT")
    write(music / "silence.wav", np.zeros(SR, dtype=np.float32))
    clipped = np.clip(music_clip(seed=2) * 20, -1, 1)
    write(music / "clipped.wav", clipped)
    write(music / "dc.wav", music_clip(seed=3) + 0.1)
    write(music / "rate8k.wav", music_clip(seed=4, sample_rate=8000), 8000)
    write(music / "six.wav", np.stack([music_clip(seed=5)] * 6))
    write(music / "same.wav", music_clip(seed=6))
    pcm, _ = sf.read(str(music / "same.wav"), dtype="int16")
    sf.write(str(music / "same.flac"), pcm, SR, subtype="PCM_16")  # the same samples, losslessly
    near = music_clip(seed=6) * 0.9 + 0.001 * np.random.default_rng(9).standard_normal(SR).astype(np.float32)
    write(music / "similar.wav", near)
    write(music / "quiet.wav", music_clip(seed=7, lufs=-35))
    write(music / "tiny.wav", music_clip(0.1, seed=8))
    (music / "broken.json").write_text('{"emotion": "sad",')
    write(music / "broken.wav", music_clip(seed=9))
    voice = root / "voice" / "amy"
    for name, seed in [("ok", 10), ("missing", 11), ("empty", 12), ("latin", 13)]:
        write(voice / f"{name}.wav", music_clip(seed=seed, lufs=-23, sample_rate=22050), 22050)
    (voice / "ok.txt").write_text("Hello there.")
    (voice / "empty.txt").write_text("  \n")
    (voice / "latin.txt").write_bytes("Está bien, señor.".encode("latin-1"))
    (voice / "speaker.json").write_text('{"language": "es"}')
    lyrics = root / "lyrics"
    (lyrics / "en").mkdir(parents=True)
    (lyrics / "fr").mkdir()
    (lyrics / "en" / "song.txt").write_text("[verse]\nWe ride at dawn\n")
    (lyrics / "en" / "song.json").write_text('{"emotion": "epic"}')
    (lyrics / "en" / "blank.txt").write_text("\n\n")
    (lyrics / "fr" / "chanson.txt").write_bytes("[chorus]\nÇa va très bien\n".encode("latin-1"))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    report, files = clean_folder(root, root.parent / "clean", progress=False)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    return root, report, {f["path"]: f for f in files}, before, after


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("music/good.wav", "ok", None),
        ("music/zero.wav", "rejected", "empty"),
        ("music/truncated.wav", "rejected", "corrupt"),
        ("music/text.wav", "rejected", "corrupt"),
        ("music/nan.wav", "rejected", "nan"),
        ("music/silence.wav", "rejected", "silent"),
        ("music/clipped.wav", "rejected", "clipped"),
        ("music/dc.wav", "fixed", "dc_offset"),
        ("music/rate8k.wav", "fixed", "sample_rate"),
        ("music/six.wav", "fixed", "channels"),
        ("music/same.flac", "ok", None),
        ("music/same.wav", "rejected", "duplicate"),
        ("music/similar.wav", "rejected", "near_duplicate"),
        ("music/quiet.wav", "fixed", "loudness"),
        ("music/tiny.wav", "rejected", "too_short"),
        ("music/broken.json", "rejected", "bad_metadata"),
        ("music/broken.wav", "ok", None),
        ("voice/amy/ok.wav", "ok", None),
        ("voice/amy/missing.wav", "rejected", "transcript_missing"),
        ("voice/amy/empty.wav", "rejected", "transcript_empty"),
        ("voice/amy/latin.wav", "fixed", "transcript_encoding"),
        ("lyrics/en/song.txt", "ok", None),
        ("lyrics/en/song.json", "ok", None),
        ("lyrics/en/blank.txt", "rejected", "empty"),
        ("lyrics/fr/chanson.txt", "fixed", "encoding"),
    ],
)
def test_each_crafted_problem_is_reported_with_its_reason(crafted, path, status, reason):
    _, _, files, _, _ = crafted
    assert files[path]["status"] == status, files[path]
    assert (reason in files[path]["reasons"]) if reason else files[path]["reasons"] == []


def test_report_and_clean_copy_keep_the_layout_and_originals_untouched(crafted):
    root, report, files, before, after = crafted
    assert before == after
    document = json.loads(report.read_text())
    assert report == root.parent / "clean" / "cleaning_report.json" and report.with_suffix(".md").is_file()
    assert {f["path"] for f in document["files"]} == set(files)
    assert files["music/same.wav"]["duplicate_of"] == "music/same.flac"
    clean = root.parent / "clean"
    assert not (clean / "music" / "nan.wav").exists() and not (clean / "music" / "broken.json").exists()
    assert (clean / "music" / "good.wav").read_bytes() == (root / "music" / "good.wav").read_bytes()
    assert (clean / "music" / "good.json").is_file() and (clean / "voice" / "amy" / "speaker.json").is_file()
    fixed, sr = load_audio(clean / "music" / "rate8k.wav", mono=False)
    assert sr == SR and abs(integrated_loudness(fixed, sr) + 14) < 0.5
    assert load_audio(clean / "music" / "six.wav", mono=False)[0].shape[0] == 2
    assert abs(load_audio(clean / "music" / "dc.wav")[0].mean()) < 1e-3
    assert (clean / "voice" / "amy" / "latin.txt").read_text(encoding="utf-8") == "Está bien, señor.\n"
    assert not (clean / "voice" / "amy" / "missing.wav").exists()
    assert not (clean / "voice" / "amy" / "empty.txt").exists()
    assert (clean / "lyrics" / "en" / "song.json").read_text() == '{"emotion": "epic"}'
    assert (clean / "lyrics" / "fr" / "chanson.txt").read_text(
        encoding="utf-8"
    ) == "[chorus]\nÇa va très bien\n"
    assert not (clean / "lyrics" / "en" / "blank.txt").exists()


def test_clean_command_exits_zero_with_rejections_and_two_when_it_cannot_run(crafted, tmp_path, capsys):
    from cinematic.cli import main

    root = crafted[0]
    assert (
        main(
            [
                "data",
                "clean",
                str(root / "voice"),
                "--out",
                str(tmp_path / "c"),
                "--report",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert "transcript_missing" in capsys.readouterr().out
    assert {f["path"] for f in json.loads((tmp_path / "r.json").read_text())["files"]} >= {"amy/ok.wav"}
    assert main(["data", "clean", str(tmp_path / "nowhere")]) == 2
    assert main(["data", "clean", str(root), "--out", str(root / "inside")]) == 2
