"""Checkpoints written before the registry redesign keep working.

`tests/fixtures/v1/` holds the `best.pth` of every `make quickstart` run made by commit 73b4004 (the
last commit before the redesign): music (MIDI), music audio route, its music vocoder, lyrics, voice and
the speech vocoder. Each loads and generates through the CLI, and `--resume` continues the training
run it came from. Their recorded data folders and vocoder paths point into the machine that made them,
so the tests pass `--data_dir` / `--vocoder` where a user who moved the files would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cinematic.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]

V1 = REPO_ROOT / "tests" / "fixtures" / "v1"


def fixture(run: str) -> Path:
    return V1 / run / "checkpoints" / "best.pth"


@pytest.fixture(autouse=True)
def _fixtures_exist():
    manifest = json.loads((V1 / "manifest.json").read_text())
    assert manifest["commit"].startswith("73b4004")


def test_old_checkpoints_are_weights_only_loadable_and_name_their_task():
    expected = {"music": "music", "music_audio": "music", "vocoder_music": "vocoder_music", "lyrics": "lyrics",
                "voice": "voice", "vocoder": "vocoder"}  # fmt: skip
    for run, task in expected.items():
        checkpoint = torch.load(fixture(run), map_location="cpu", weights_only=True)
        assert checkpoint["task"] == task and checkpoint["format_version"] == 1


def test_old_music_checkpoint_generates_midi(tmp_path):
    out = tmp_path / "old.mid"
    assert main(["generate", "music", "--checkpoint", str(fixture("music")), "--length", "64", "--seed", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    from symusic import Score

    assert Score(str(out)).note_num() > 0


def test_old_audio_route_checkpoint_generates_audio_with_its_old_vocoder(tmp_path):
    out = tmp_path / "old.wav"
    assert main(["generate", "music", "--checkpoint", str(fixture("music_audio")), "--duration", "1.0",
                 "--vocoder", str(fixture("vocoder_music")), "--out", str(out)]) == 0  # fmt: skip
    wav, sr = sf.read(out)
    assert sr == 44100 and len(wav) > 0.9 * sr and np.isfinite(wav).all()


def test_old_lyrics_checkpoint_generates_text(tmp_path):
    out = tmp_path / "old.txt"
    assert main(["generate", "lyrics", "--checkpoint", str(fixture("lyrics")), "--language", "en",
                 "--max_new_tokens", "40", "--out", str(out)]) == 0  # fmt: skip
    assert len(out.read_text(encoding="utf-8").strip()) > 10


def test_old_voice_and_vocoder_checkpoints_synthesize_and_vocode(tmp_path):
    import cinematic

    voice = cinematic.load(fixture("voice"))
    speaker = sorted(voice.speakers)[0]
    out = tmp_path / "old_voice.wav"
    assert main(["synthesize", "--checkpoint", str(fixture("voice")), "--vocoder", str(fixture("vocoder")),
                 "--text", "The storm is coming.", "--speaker", speaker, "--out", str(out)]) == 0  # fmt: skip
    wav, sr = sf.read(out)
    assert sr == 22050 and len(wav) > 0.3 * sr and np.abs(wav).max() > 1e-3
    vocoded = tmp_path / "vocoded.wav"
    assert (
        main(["vocode", "--checkpoint", str(fixture("vocoder")), "--wav", str(out), "--out", str(vocoded)])
        == 0
    )
    assert abs(len(sf.read(vocoded)[0]) - len(wav)) <= 256


@pytest.mark.parametrize(
    "run, family, data, steps",
    [("music", "music", "music", 2), ("lyrics", "lyrics", "lyrics", 2), ("voice", "voice", "voice", 2)],
)
def test_resume_from_an_old_training_checkpoint_continues(run, family, data, steps, demo_data, tmp_path):
    """`--resume OLD.pth` with its stored config: the run continues from the old step."""
    old = torch.load(fixture(run), map_location="cpu", weights_only=True)
    target = int(old["step"]) + steps
    data_dir = demo_data / data
    if family == "voice":  # two of the speakers it knows: the same resume, a fifth of the feature work
        data_dir = tmp_path / "voice_data"
        for speaker in sorted(p for p in (demo_data / data).iterdir() if p.is_dir())[:2]:
            shutil.copytree(speaker, data_dir / speaker.name)
    args = ["train", family, "--resume", str(fixture(run)), "--data_dir", str(data_dir),
            "--work_dir", str(tmp_path), "--set", "data.num_workers=0"]  # fmt: skip
    section = {"music": "music_model", "lyrics": "lyrics_model", "voice": "voice_model"}[family]
    for prefix in ("training", f"{section}.training"):  # the quickstart set some keys per section
        for key, value in (
            ("max_steps", target),
            ("validate_every_steps", 1000),
            ("checkpoint_every_steps", 1000),
        ):
            args += ["--set", f"{prefix}.{key}={value}"]
    if family == "voice":
        args += ["--stage", "acoustic"]
    assert main(args) == 0
    resumed = torch.load(tmp_path / run / "checkpoints" / "last.pth", map_location="cpu", weights_only=True)
    assert resumed["step"] == target
    name = next(iter(old["model"]))
    changed = [not torch.equal(old["model"][name][k], resumed["model"][name][k]) for k in old["model"][name]]
    assert any(changed)  # it trained on from the old weights ...
    assert resumed["model"][name].keys() == old["model"][name].keys()  # ... of the same model


def test_old_audio_route_run_folder_finds_its_vocoder_beside_it(tmp_path):
    """The fixtures sit as a moved run folder would (music_audio/ next to vocoder_music/): without
    --vocoder the generator finds the music vocoder beside the run."""
    shutil.copytree(V1 / "music_audio", tmp_path / "runs" / "music_audio")
    shutil.copytree(V1 / "vocoder_music", tmp_path / "runs" / "vocoder_music")
    out = tmp_path / "moved.wav"
    ckpt = tmp_path / "runs" / "music_audio" / "checkpoints" / "best.pth"
    assert main(["generate", "music", "--checkpoint", str(ckpt), "--duration", "0.5", "--out", str(out)]) == 0
    assert sf.read(out)[1] == 44100
