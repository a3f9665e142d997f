"""Vocoder task and inference: learning, exact two-optimizer resume through the trainer, chunked synthesis,
mel-config checks, ground-truth-aligned fine-tuning data, the `vocode` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cinematic.configs import load_config
from cinematic.configs.model_config import MelConfig, VocoderConfig
from cinematic.data.audio import mel_spectrogram
from cinematic.errors import UserError
from cinematic.generation.vocode import Vocoder, hifigan_config
from cinematic.models.hifigan import Generator, HiFiGANConfig, InferenceGenerator
from cinematic.tasks.vocoder import MusicVocoderTask, VocoderTask, collate
from cinematic.training.task import BuildContext

SR = 22050


def tone(seconds: float, freq: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 3 * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def tone_dir(tmp_path_factory) -> Path:
    """Two 'speakers' of three 0.4 s harmonic tones each (one at 16 kHz, resampled by the task)."""
    root = tmp_path_factory.mktemp("vocoder_data")
    for speaker, base in (("a", 140.0), ("b", 210.0)):
        (root / speaker).mkdir()
        for i in range(3):
            sr = 16000 if (speaker, i) == ("b", 2) else SR
            sf.write(root / speaker / f"{i}.wav", tone(0.4, base * (1 + 0.25 * i), sr), sr)
    return root


def tiny_cfg(work_dir: Path, *overrides: str):
    cfg = load_config(
        "tiny",
        [
            "vocoder.segment_size=1024",
            "training.batch_size=2",
            "training.validate_every_steps=100",
            "training.checkpoint_every_steps=100",
            "data.val_fraction=0.34",
            *overrides,
        ],
    )
    cfg.training.work_dir = str(work_dir)
    return cfg


@pytest.fixture(scope="module")
def trained(tone_dir, tmp_path_factory):
    """Three steps straight, and one step + resume + two steps, through the real trainer."""
    from cinematic.training.trainer import run_training

    root = tmp_path_factory.mktemp("vocoder_runs")
    straight = run_training(VocoderTask(), tiny_cfg(root / "straight", "training.max_steps=3"), tone_dir)
    run_training(VocoderTask(), tiny_cfg(root / "resumed", "training.max_steps=1"), tone_dir)
    resumed = run_training(
        VocoderTask(), tiny_cfg(root / "resumed", "training.max_steps=3"), tone_dir, resume="auto"
    )
    return straight, resumed


def test_resume_is_exact_for_generator_discriminators_and_both_optimizers(trained):
    straight, resumed = (torch.load(r.last_checkpoint, weights_only=True) for r in trained)
    assert straight["step"] == resumed["step"] == 3
    for name in ("generator", "mpd", "msd"):
        for key, value in straight["model"][name].items():
            assert torch.equal(value, resumed["model"][name][key]), f"{name}.{key}"
    assert set(straight["optimizers"]) == {"discriminator", "generator"}
    for phase in ("discriminator", "generator"):
        a, b = straight["optimizers"][phase]["state"], resumed["optimizers"][phase]["state"]
        assert a.keys() == b.keys() and len(a) > 0
        for index in a:
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(a[index][key], b[index][key]), f"{phase} state {index}.{key}"
    state = straight["task_state"]
    assert MelConfig.model_validate(state["mel_config"]) == load_config("tiny").voice_model.audio
    # the resolved model settings travel with the weights (the tiny preset: V3 at 32 channels)
    assert HiFiGANConfig(**state["model_config"]) == hifigan_config(
        load_config("tiny").vocoder, MelConfig.model_validate(state["mel_config"])
    )


def test_load_gives_the_vocoder_and_copy_synthesis_has_the_right_length(trained, tone_dir):
    import cinematic

    vocoder = cinematic.load(trained[0].last_checkpoint)
    assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == SR and vocoder.hop_length == 256
    assert not any("parametrizations" in k for k in vocoder.generator.state_dict())  # weight norm folded
    audio = vocoder.copy_synthesis(tone_dir / "a" / "0.wav")
    assert audio.dtype == np.float32 and audio.shape == (int(0.4 * SR) // 256 * 256,)
    batch = vocoder.vocode_batch([np.full((80, 5), -5.0), np.full((80, 9), -5.0)])
    assert [len(x) for x in batch] == [5 * 256, 9 * 256]


def test_mel_config_mismatch_names_the_differing_fields(trained):
    vocoder = Vocoder.from_checkpoint(trained[0].last_checkpoint)
    vocoder.check_mel_config(MelConfig())  # the same front end passes
    with pytest.raises(UserError, match=r"sample_rate: 22050 != 44100.*hop_length: 256 != 512") as info:
        vocoder.check_mel_config(MelConfig(sample_rate=44100, hop_length=512, n_fft=2048, win_length=2048))
    assert "n_mels" not in str(info.value)
    with pytest.raises(UserError, match="n_mels=80"):
        vocoder.vocode(np.zeros((128, 10), dtype=np.float32))


def test_resume_with_another_mel_front_end_is_refused(trained, tone_dir):
    task = VocoderTask()
    cfg = load_config("tiny", ["voice_model.audio.fmax=7000"])
    state = torch.load(trained[0].last_checkpoint, weights_only=True)["task_state"]
    ctx = BuildContext(
        run_dir=Path("unused"), cache_dir=Path("unused"), device=torch.device("cpu"), restored_state=state
    )
    with pytest.raises(UserError, match=r"fmax: 8000.0 != 7000.0"):
        task.build(cfg, tone_dir, ctx)


def test_gan_steps_on_one_fixed_clip_halve_the_mel_l1():
    """Full GAN steps (discriminator phase, then generator phase with adversarial + feature matching +
    mel L1) through `VocoderTask.training_step`, on one fixed 1024-sample clip with the tiny models and a
    hand-written two-optimizer loop (the trainer is covered by the resume test)."""
    torch.manual_seed(0)
    task = VocoderTask()
    cfg = load_config("tiny")
    task.mel_cfg = cfg.voice_model.audio
    model_cfg = hifigan_config(cfg.vocoder, task.mel_cfg)
    from cinematic.models.hifigan import MultiPeriodDiscriminator, MultiScaleDiscriminator

    models = {
        "generator": Generator(model_cfg),
        "mpd": MultiPeriodDiscriminator(model_cfg.mpd_periods, model_cfg.discriminator_width),
        "msd": MultiScaleDiscriminator(model_cfg.discriminator_width),
    }
    wav = torch.from_numpy(tone(1024 / SR, 220.0))
    batch = collate([{"audio": wav, "mel": mel_spectrogram(wav, task.mel_cfg)}])
    opt_g = torch.optim.AdamW(models["generator"].parameters(), 3e-3, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW(
        [*models["mpd"].parameters(), *models["msd"].parameters()], 3e-3, betas=(0.8, 0.99)
    )

    def mel_l1() -> float:
        with torch.no_grad():
            return task.validate(models, [batch])["val/mel_l1"]

    before = mel_l1()
    for _ in range(12):
        scratch: dict = {}
        for phase, opt in (("discriminator", opt_d), ("generator", opt_g)):
            opt.zero_grad()
            task.training_step(models, batch, phase, scratch).loss.backward()
            opt.step()
    after = mel_l1()
    assert after < before / 2, (before, after)


@pytest.fixture(scope="module")
def random_vocoder() -> Vocoder:
    torch.manual_seed(1)
    generator = Generator(
        hifigan_config(VocoderConfig(preset="v3", upsample_initial_channel=32), MelConfig())
    )
    return Vocoder(generator, MelConfig())


@pytest.mark.parametrize("chunk", [9, 40])
def test_chunked_synthesis_equals_one_shot_without_seams(random_vocoder, chunk):
    """Tolerance 1e-5 absolute (float rounding); the full context makes every chunk exact, edges included."""
    torch.manual_seed(2)
    mel = torch.randn(2, 80, 90) - 4.0
    whole = random_vocoder.vocode(mel)
    chunked = random_vocoder.vocode(mel, chunk_frames=chunk)
    assert chunked.shape == whole.shape == (2, 90 * 256)
    assert np.abs(chunked - whole).max() < 1e-5
    # no discontinuity: the sample-to-sample step across each chunk boundary is the one-shot step
    hop = 256
    for boundary in range(chunk * hop, 90 * hop, chunk * hop):
        step_chunked = chunked[:, boundary] - chunked[:, boundary - 1]
        step_whole = whole[:, boundary] - whole[:, boundary - 1]
        assert np.abs(step_chunked - step_whole).max() < 1e-5
    pieces = list(random_vocoder.stream(mel[0], chunk_frames=chunk))
    assert np.abs(np.concatenate(pieces) - whole[0]).max() < 1e-5


def test_vocode_runs_the_inference_generator_and_equals_the_plain_generator(random_vocoder):
    """`vocode` synthesizes with the fast `InferenceGenerator`; tolerance 1e-4 (hifigan tests)."""
    assert isinstance(random_vocoder.synthesizer, InferenceGenerator)
    mel = torch.randn(3, 80, 21) - 4.0
    with torch.inference_mode():
        plain = random_vocoder.generator(mel)[:, 0].numpy()
    assert np.abs(random_vocoder.vocode(mel) - plain).max() <= 1e-4


def test_chunks_without_context_would_show_seams(random_vocoder, monkeypatch):
    """The check above can fail: with no context the chunk edges differ from one-shot synthesis."""
    mel = torch.randn(80, 60) - 4.0
    whole = random_vocoder.vocode(mel)
    monkeypatch.setattr(type(random_vocoder), "context_frames", property(lambda self: 0))
    assert np.abs(random_vocoder.vocode(mel, chunk_frames=20) - whole).max() > 1e-3


def test_aligned_mels_are_used_and_frame_counts_checked(tone_dir, tmp_path):
    cfg = load_config("tiny", ["vocoder.segment_size=1024"])
    mel_cfg = cfg.voice_model.audio
    mel_dir = tmp_path / "mels"
    for wav in sorted(tone_dir.rglob("*.wav")):
        audio, sr = sf.read(wav, dtype="float32")
        if sr != SR:
            continue  # that clip has no predicted mel: it is skipped with a warning
        out = mel_dir / wav.relative_to(tone_dir).with_suffix(".npy")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, mel_spectrogram(audio, mel_cfg).numpy() + 0.5)  # "predicted": shifted analysis mel
    cfg.vocoder.mel_dir = str(mel_dir)
    ctx = BuildContext(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", device=torch.device("cpu"))
    built = VocoderTask().build(cfg, tone_dir, ctx)
    item = built.train_set[0]
    assert item["mel"].shape == (80, 4) and item["audio"].shape == (1024,)
    # the crop's mel frames are the saved mel's frames at the crop's position in its WAV
    source = built.train_set.paths[0]
    full, _ = sf.read(source, dtype="float32")
    offset = next(
        i for i in range(0, len(full) - 1024 + 1, 256) if np.array_equal(full[i : i + 1024], item["audio"])
    )
    saved = np.load(mel_dir / source.relative_to(tone_dir).with_suffix(".npy"))
    assert np.array_equal(item["mel"].numpy(), saved[:, offset // 256 : offset // 256 + 4])

    bad = mel_dir / "a" / "1.npy"
    np.save(bad, np.zeros((80, 3), dtype=np.float32))
    with pytest.raises(UserError, match=r"1\.npy: 3 mel frames, but its audio has 8820 samples = 34 frames"):
        VocoderTask().build(cfg, tone_dir, ctx)


def test_music_vocoder_uses_the_music_mel_front_end():
    cfg = load_config("tiny")
    task = MusicVocoderTask()
    assert task.name == "vocoder_music" and task.mel_config(cfg) == cfg.music_model.audio
    gen = hifigan_config(cfg.vocoder, task.mel_config(cfg))
    assert gen.hop_length == cfg.music_model.audio.hop_length and gen.n_mels == cfg.music_model.audio.n_mels


def test_vocode_command_writes_copy_synthesis_and_mel_inputs(trained, tone_dir, tmp_path):
    from cinematic.cli import main

    ckpt = str(trained[0].last_checkpoint)
    out = tmp_path / "copy.wav"
    assert (
        main(["vocode", "--checkpoint", ckpt, "--wav", str(tone_dir / "a" / "1.wav"), "--out", str(out)]) == 0
    )
    audio, sr = sf.read(out)
    assert sr == SR and len(audio) == int(0.4 * SR) // 256 * 256
    mel = tmp_path / "mel.npy"
    np.save(mel, np.full((80, 12), -4.0, dtype=np.float32))
    out2 = tmp_path / "from_mel.wav"
    assert (
        main(["vocode", "--checkpoint", ckpt, "--mel", str(mel), "--chunk_frames", "5", "--out", str(out2)])
        == 0
    )
    assert sf.info(out2).frames == 12 * 256
    np.save(mel, np.zeros((40, 12), dtype=np.float32))
    assert main(["vocode", "--checkpoint", ckpt, "--mel", str(mel), "--out", str(out2)]) == 2  # UserError


def test_unreadable_audio_in_a_vocoder_folder_is_skipped_and_listed_or_refused_with_strict(
    tone_dir, tmp_path, capsys
):
    """The dataset reads clips lazily: a broken file found only mid-training would stop the run, so the
    build probes every file's header and ends once (a text file named .wav, an empty WAV, a FLAC cut in
    half: its start decodes, its end does not)."""
    import io
    import json
    import shutil

    from cinematic.cli import main
    from cinematic.utils import torch_threads

    data = tmp_path / "data"
    shutil.copytree(tone_dir, data)
    (data / "a" / "broken.wav").write_text("not audio\n" * 40)
    sf.write(data / "b" / "empty.wav", np.zeros(0, np.float32), SR)
    flac = io.BytesIO()
    sf.write(flac, tone(1.0, 330.0), SR, format="FLAC")
    (data / "b" / "cut.flac").write_bytes(flac.getvalue()[: len(flac.getvalue()) // 2])
    common = ["train", "vocoder", "--config", "tiny", "--data_dir", str(data), "--set", "vocoder.segment_size=1024",
              "--set", "training.max_steps=1", "--set", "training.batch_size=2", "--set", "data.val_fraction=0.34",
              "--set", "data.num_workers=0"]  # fmt: skip

    assert main([*common, "--work_dir", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'a' / 'broken.wav'}: cannot decode audio" in err and "Traceback" not in err

    with torch_threads(1):  # a tiny model: a second thread only spins on a busy machine
        assert main([*common, "--work_dir", str(tmp_path / "skip")]) == 0
    report = json.loads((tmp_path / "skip" / "vocoder" / "skipped_files.json").read_text())
    reasons = {Path(f["path"]).relative_to(data).as_posix(): f["reason"] for f in report["files"]}
    assert set(reasons) == {"a/broken.wav", "b/cut.flac", "b/empty.wav"}
    assert "no audio samples" in reasons["b/empty.wav"] and "cannot decode audio" in reasons["b/cut.flac"]
    assert (
        torch.load(tmp_path / "skip" / "vocoder" / "checkpoints" / "last.pth", weights_only=True)["step"] == 1
    )


def test_copy_synthesis_of_a_clip_shorter_than_one_window_is_a_clear_error(trained, tmp_path, capsys):
    from cinematic.cli import main

    short = tmp_path / "short.wav"
    sf.write(short, tone(0.015, 220.0), SR)  # 330 samples: more than a hop, less than the STFT's padding
    argv = [
        "vocode",
        "--checkpoint",
        str(trained[0].last_checkpoint),
        "--wav",
        str(short),
        "--out",
        str(tmp_path / "o.wav"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{short}: audio too short for copy-synthesis" in err and "Traceback" not in err
