from __future__ import annotations

import numpy as np
import pytest
import torch

from cinematic.configs.model_config import MelConfig
from cinematic.data.audio import (
    frame_energy,
    load_audio,
    mel_spectrogram,
    pitch_praat,
    resample,
    save_audio,
    segment,
)
from cinematic.errors import UserError


def sine(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_save_load_round_trip_keeps_shape_rate_and_values(tmp_path):
    stereo = np.stack([sine(440, 0.2, 16000), sine(220, 0.2, 16000, 0.3)])
    path = save_audio(tmp_path / "a.flac", stereo, 16000, subtype="PCM_16")
    audio, sr = load_audio(path, mono=False)
    assert sr == 16000 and audio.shape == stereo.shape and audio.dtype == np.float32
    np.testing.assert_allclose(audio, stereo, atol=1e-4)
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-4)
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temporary file"


def test_load_resamples_with_soxr_and_keeps_the_tone(tmp_path):
    save_audio(tmp_path / "a.wav", sine(1000, 0.5, 44100), 44100)
    audio, sr = load_audio(tmp_path / "a.wav", sample_rate=16000)
    assert sr == 16000 and len(audio) == 8000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 1000) <= 2
    stereo = resample(np.stack([audio, audio]), 16000, 8000)
    assert stereo.shape == (2, 4000)


def test_save_scales_overloud_audio_instead_of_wrapping(tmp_path):
    save_audio(tmp_path / "loud.wav", sine(440, 0.1, 8000, amplitude=3.0), 8000)
    audio, _ = load_audio(tmp_path / "loud.wav")
    assert 0.99 < np.abs(audio).max() <= 1.0
    assert np.corrcoef(audio, sine(440, 0.1, 8000))[0, 1] > 0.999


@pytest.mark.parametrize("content", [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"hello, I am text"])
def test_corrupt_file_raises_user_error_naming_it(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(UserError, match="bad.wav"):
        load_audio(path)
    with pytest.raises(UserError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_segment_cuts_pieces_and_keeps_the_remainder():
    audio = np.arange(25, dtype=np.float32)
    pieces = segment(audio, 10, 1.0)
    assert [len(p) for p in pieces] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate(pieces), audio)
    assert [len(p) for p in segment(audio, 10, 1.0, keep_last=False)] == [10, 10]
    assert [p.shape for p in segment(np.zeros((2, 25)), 10, 1.0)] == [(2, 10), (2, 10), (2, 5)]


def test_pitch_is_aligned_with_mel_frames_and_zero_when_unvoiced():
    cfg = MelConfig()
    wav = sine(220, 1.0, cfg.sample_rate)
    wav[: cfg.sample_rate // 2] = 0.0  # first half silent
    f0 = pitch_praat(wav, cfg.sample_rate, cfg.hop_length)
    frames = mel_spectrogram(wav, cfg).shape[-1]
    assert len(f0) == frames
    onset = (cfg.sample_rate // 2) // cfg.hop_length
    assert np.all(f0[: onset - 1] == 0)
    voiced = f0[onset + 3 : frames - 3]
    np.testing.assert_allclose(voiced, 220, rtol=0.01)
    assert len(pitch_praat(wav, cfg.sample_rate, cfg.hop_length, n_frames=50)) == 50


def test_energy_is_frame_aligned_and_matches_stft_norm():
    cfg = MelConfig()
    wav = sine(440, 0.5, cfg.sample_rate)
    wav[: cfg.sample_rate // 4] *= 0.1
    energy = frame_energy(wav, cfg)
    assert energy.shape == (mel_spectrogram(wav, cfg).shape[-1],)
    assert energy[-5] > 5 * energy[5]
    from cinematic.data.audio import MelSpectrogram

    mag = MelSpectrogram(cfg).magnitude(torch.from_numpy(wav)[None])[0]
    np.testing.assert_allclose(energy, mag.norm(dim=0).numpy(), rtol=1e-5)
