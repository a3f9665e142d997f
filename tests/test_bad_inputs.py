"""Every bad input gets a clear answer: the CLI over a generated set of broken inputs exits 0 or 2,
never shows a traceback, and (for exit 2) names the file or key that is wrong.

The checkpoints are the small pre-redesign quickstart checkpoints in tests/fixtures/v1 (they also
prove old checkpoints keep loading); text and config values are drawn by hypothesis."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cinematic.cli import main
from cinematic.data.audio import save_audio

REPO_ROOT = Path(__file__).resolve().parents[1]

V1 = REPO_ROOT / "tests" / "fixtures" / "v1"
MUSIC, LYRICS = V1 / "music/checkpoints/best.pth", V1 / "lyrics/checkpoints/best.pth"
VOICE, VOCODER = V1 / "voice/checkpoints/best.pth", V1 / "vocoder/checkpoints/best.pth"


def run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def expect_error(capsys, argv: list[str], *names: str) -> str:
    code, err = run(capsys, argv)
    assert code == 2, f"{argv}: exit {code}\n{err}"
    for name in names:
        assert str(name) in err, f"{argv}: {name!r} not named in\n{err}"
    return err


class NotAllowed:
    """An arbitrary class: a checkpoint holding it must be refused by the weights-only loader."""


@pytest.fixture(scope="module")
def broken_checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken")
    data = MUSIC.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty": b"",
        "pickled": pickle.dumps({"task": "music", "model": NotAllowed()}),
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.pth"
        out[name].write_bytes(content)
    torch.save({"task": "music", "model": {}, "obj": NotAllowed()}, folder / "torch_pickled.pth")
    out["torch_pickled"] = folder / "torch_pickled.pth"
    return out


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "pickled", "torch_pickled"])
def test_unreadable_checkpoints_are_named(kind, broken_checkpoints, tmp_path, capsys):
    path = broken_checkpoints[kind]
    for argv in (
        ["generate", "music", "--checkpoint", path, "--out", tmp_path / "o.mid"],
        ["generate", "lyrics", "--checkpoint", path, "--language", "en", "--out", tmp_path / "o.txt"],
        ["synthesize", "--checkpoint", path, "--text", "hi", "--speaker", "x", "--out", tmp_path / "o.wav"],
        ["vocode", "--checkpoint", path, "--mel", tmp_path / "m.npy", "--out", tmp_path / "o.wav"],
        ["train", "music", "--resume", path, "--data_dir", tmp_path, "--work_dir", tmp_path / "w"],
    ):
        expect_error(capsys, argv, path.name)


@pytest.mark.parametrize(
    "argv_head, ckpt",
    [
        (["generate", "music"], LYRICS),
        (["generate", "music"], VOICE),
        (["generate", "lyrics", "--language", "en"], MUSIC),
        (["synthesize", "--text", "hello", "--speaker", "x"], MUSIC),
        (["vocode", "--wav", REPO_ROOT / "README.md"], VOICE),
    ],
)
def test_checkpoints_of_another_family_are_refused(argv_head, ckpt, tmp_path, capsys):
    suffix = {"music": ".mid", "lyrics": ".txt"}.get(argv_head[1], ".wav")
    err = expect_error(capsys, [*argv_head, "--checkpoint", ckpt, "--out", tmp_path / f"o{suffix}"])
    assert ckpt.name in err or "checkpoint" in err


def test_unknown_labels_speakers_and_languages_list_what_is_known(tmp_path, capsys):
    expect_error(capsys, ["generate", "music", "--checkpoint", MUSIC, "--emotion", "no-such-mood",
                          "--out", tmp_path / "o.mid"], "no-such-mood", "knows")  # fmt: skip
    expect_error(capsys, ["generate", "music", "--checkpoint", MUSIC, "--fill_min_p", "1.5",
                          "--out", tmp_path / "o.mid"], "--fill_min_p", "between 0 and 1")  # fmt: skip
    expect_error(capsys, ["generate", "lyrics", "--checkpoint", LYRICS, "--language", "xx",
                          "--out", tmp_path / "o.txt"], "xx")  # fmt: skip
    expect_error(capsys, ["synthesize", "--checkpoint", VOICE, "--vocoder", VOCODER, "--text", "hello",
                          "--speaker", "nobody", "--out", tmp_path / "o.wav"], "nobody")  # fmt: skip
    expect_error(capsys, ["synthesize", "--checkpoint", VOICE, "--vocoder", VOCODER, "--text", "hello",
                          "--language", "xx", "--speaker", "x", "--out", tmp_path / "o.wav"], "xx")  # fmt: skip


def test_yaml_syntax_errors_and_bad_values_name_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [3\n", encoding="utf-8")
    expect_error(capsys, ["config", "show", "--config", bad], "bad.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    expect_error(capsys, ["config", "show", "--config", listing], "list.yaml")
    expect_error(capsys, ["config", "show", "--set", "training.learning_rate=fast"], "training.learning_rate")
    expect_error(capsys, ["config", "show", "--set", "music_model.num_layrs=2"], "music_model.num_layers")
    expect_error(capsys, ["config", "show", "--config", tmp_path / "missing.yaml"], "missing.yaml")


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(
        [
            "music_model.num_layers",
            "music_model.dropout",
            "music_model.max_seq_len",
            "voice_model.num_heads",
            "lyrics_model.embed_dim",
            "training.batch_size",
            "training.learning_rate",
            "vocoder.segment_size",
            "data.val_fraction",
        ]
    ),  # fmt: skip
    value=st.one_of(st.integers(-10, 5000), st.floats(allow_nan=True), st.text(max_size=8), st.booleans()),
)
def test_any_config_value_loads_or_is_refused_naming_the_key(key, value, capsys):
    code = main(["config", "show", "--set", f"{key}={value}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    section, name = key.split(".")
    # a cross-field check may be reported on its partner key (embed_dim vs num_heads): both are named
    assert code == 0 or (code == 2 and f"{section}." in err and name in err), err


def _voice_argv(tmp_path: Path, text: str) -> list:
    return ["synthesize", "--checkpoint", VOICE, "--vocoder", VOCODER, "--text", text, "--speaker",
            "en_anna", "--out", tmp_path / "o.wav"]  # fmt: skip


@pytest.mark.parametrize("text", ["", "   ", "🎵🎵 ©®", "…—¿¡"])
def test_text_with_nothing_to_say_is_a_clear_error(text, tmp_path, capsys):
    expect_error(capsys, _voice_argv(tmp_path, text), "text")
    assert not (tmp_path / "o.wav").exists()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=60))
def test_any_text_synthesizes_or_is_refused(text, tmp_path_factory, capsys):
    out_dir = tmp_path_factory.mktemp("t")
    code, err = run(capsys, _voice_argv(out_dir, text))
    assert code in (0, 2), err
    assert code == 2 or (out_dir / "o.wav").stat().st_size > 44


def test_very_long_text_synthesizes(tmp_path, capsys):
    code, err = run(capsys, _voice_argv(tmp_path, "The night is long. " * 25))
    assert code == 0, err


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("refs")
    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    voiced = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    refs = {"silent": folder / "silent.wav", "short": folder / "short.wav", "garbage": folder / "garbage.wav"}
    save_audio(refs["silent"], np.zeros(sr, dtype=np.float32), sr)
    save_audio(refs["short"], voiced[: sr // 100], sr)
    refs["garbage"].write_bytes(b"RIFF....WAVEfmt garbage")
    t48 = np.arange(int(1.5 * 48000)) / 48000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 140 * t48), 0.3 * np.sin(2 * np.pi * 150 * t48)]).astype(
        np.float32
    )
    refs["stereo48k"] = save_audio(folder / "stereo48k.wav", stereo, 48000)
    return refs


@pytest.mark.parametrize("kind", ["silent", "short", "garbage"])
def test_unusable_reference_clips_are_named(kind, references, tmp_path, capsys):
    argv = ["synthesize", "--checkpoint", VOICE, "--vocoder", VOCODER, "--text", "hello there",
            "--reference", references[kind], "--out", tmp_path / "o.wav"]  # fmt: skip
    expect_error(capsys, argv, references[kind].name)


def test_a_48k_stereo_reference_is_downmixed_and_resampled(references, tmp_path, capsys):
    argv = ["synthesize", "--checkpoint", VOICE, "--vocoder", VOCODER, "--text", "hello there",
            "--reference", references["stereo48k"], "--out", tmp_path / "o.wav"]  # fmt: skip
    code, err = run(capsys, argv)
    assert code == 0, err


def test_broken_files_inside_training_folders_are_skipped_and_reported(demo_data, tmp_path, capsys):
    """A corrupt MIDI, a corrupt WAV and a malformed JSON label file in a music folder: the run
    trains on the rest and lists the unreadable files; a malformed JSON only loses its labels."""
    import json

    data = tmp_path / "music"
    data.mkdir()
    for midi in sorted((demo_data / "music").glob("*.mid"))[:6]:
        shutil.copy(midi, data / midi.name)
        shutil.copy(midi.with_suffix(".json"), data / midi.with_suffix(".json").name)
    (data / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06 not really")
    (data / next(iter(sorted(data.glob("*.json")))).name).write_text("{not json", encoding="utf-8")
    code, err = run(capsys, ["train", "music", "--config", "tiny", "--data_dir", data, "--work_dir",
                             tmp_path / "w", "--set", "training.max_steps=1", "--set", "music_model.num_layers=1",
                             "--set", "music_model.max_seq_len=32", "--set", "data.num_workers=0"])  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "w" / "music" / "skipped_files.json").read_text())
    assert [Path(f["path"]).name for f in report["files"]] == ["corrupt.mid"]
