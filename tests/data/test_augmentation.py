from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal

from cinematic.data.audio import integrated_loudness, load_audio, save_audio
from cinematic.data.augmentation import (
    TRANSFORMS,
    AugmentedDataset,
    VariationGenerator,
    add_noise,
    colored_noise,
    compress,
    create_augmentation_config,
    equalize,
    room_impulse_response,
    stereo_width,
    time_pitch,
)
from cinematic.errors import UserError

SR = 44100


def sine(freq: float, seconds: float, amplitude: float = 0.5, sample_rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(audio: np.ndarray, sample_rate: int = SR) -> float:
    """Dominant frequency with parabolic interpolation of the log spectrum (ignoring the edges)."""
    x = audio[len(audio) // 10 : -len(audio) // 10]
    spectrum = np.log(np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12)
    k = int(np.argmax(spectrum))
    a, b, c = spectrum[k - 1 : k + 2]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sample_rate / len(x)


def music_like(seconds: float = 1.0, channels: int = 2) -> np.ndarray:
    """Two detuned tones with a loud/soft envelope and a little noise: a stand-in for a music clip."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    envelope = 0.3 + 0.25 * np.sin(2 * np.pi * 2 * np.arange(n) / SR)
    chans = [
        envelope * (sine(220 * (1 + c / 100), seconds) + 0.3 * sine(660, seconds)) for c in range(channels)
    ]
    audio = np.stack(chans) + 0.02 * rng.standard_normal((channels, n))
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def loud_clip() -> np.ndarray:
    clip = music_like(1.0)
    return clip / np.abs(clip).max()  # peak exactly 1.0: every boost must be limited


def test_pitch_shift_plus_three_semitones_moves_440_hz():
    shifted = time_pitch(sine(440, 1.0), SR, semitones=3.0)
    assert len(shifted) == SR
    assert peak_frequency(shifted) == pytest.approx(440 * 2 ** (3 / 12), rel=0.01)


def test_tempo_1_15_shortens_by_1_over_1_15_and_keeps_pitch():
    stretched = time_pitch(sine(440, 1.0), SR, tempo=1.15)
    assert len(stretched) == pytest.approx(SR / 1.15, rel=0.01)
    assert peak_frequency(stretched) == pytest.approx(440, rel=0.01)
    stereo = time_pitch(np.stack([sine(440, 0.5), sine(330, 0.5)]), SR, tempo=0.9, semitones=-2)
    assert stereo.shape == (2, round(SR * 0.5 / 0.9))


def test_width_zero_gives_identical_channels_and_keeps_bass_mono():
    stereo = np.stack([sine(440, 0.5), sine(60, 0.5) + sine(2000, 0.5, 0.2)])
    narrow = stereo_width(stereo, SR, width=0.0)
    np.testing.assert_array_equal(narrow[0], narrow[1])
    np.testing.assert_allclose(narrow.mean(axis=0), stereo.mean(axis=0), atol=1e-6)  # mid untouched
    wide = stereo_width(np.stack([sine(50, 1.0), -sine(50, 1.0)]), SR, width=1.5)
    side = (wide[0] - wide[1])[SR // 4 :]
    assert np.sqrt((side**2).mean()) < 0.05 * 0.5  # a 50 Hz side signal is removed: bass is mono
    assert stereo_width(sine(440, 0.1), SR, 1.5).shape == (SR // 10,)  # mono passes through


@pytest.mark.parametrize(("color", "slope"), [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_noise_colors_have_exact_spectral_slopes(color, slope):
    noise = colored_noise(4 * SR, color, np.random.default_rng(1), channels=1, sample_rate=SR)[0]
    freqs, psd = scipy.signal.welch(noise, SR, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 10_000)
    fitted = np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.5)
    assert np.sqrt((noise**2).mean()) == pytest.approx(1.0, rel=1e-3)


def test_noise_is_added_at_the_target_snr():
    clean = sine(440, 1.0)
    noisy = add_noise(clean, SR, snr_db=20.0, color="pink", rng=np.random.default_rng(0))
    snr = 10 * np.log10((clean**2).mean() / ((noisy - clean) ** 2).mean())
    assert snr == pytest.approx(20.0, abs=0.1)


def test_compressor_reduces_the_loud_soft_difference():
    audio = np.concatenate([sine(440, 0.5, 0.9), sine(440, 0.5, 0.05)])
    out = compress(audio, SR, threshold_db=-30, ratio=4.0)

    def rms_db(x):
        return 10 * np.log10((x**2).mean())

    before = rms_db(audio[SR // 10 : SR // 2]) - rms_db(audio[-SR // 4 :])
    after = rms_db(out[SR // 10 : SR // 2]) - rms_db(out[-SR // 4 :])
    assert after < before - 10


def test_eq_low_shelf_boosts_bass_and_leaves_highs():
    boosted = equalize(np.stack([sine(40, 1.0), sine(8000, 1.0)]), SR, low_gain_db=6.0, high_freq=15000)
    gains = 20 * np.log10(np.abs(boosted[:, SR // 2 :]).max(axis=1) / 0.5)
    assert gains[0] == pytest.approx(6.0, abs=0.5) and abs(gains[1]) < 0.5


def test_room_response_decays_60_db_in_rt60():
    ir = room_impulse_response(SR, rt60=0.5, rng=np.random.default_rng(0))[0]
    schroeder = 10 * np.log10(np.cumsum((ir**2)[::-1])[::-1] + 1e-20)
    t5, t35 = np.argmax(schroeder < -5), np.argmax(schroeder < -35)
    rt60 = 2 * (t35 - t5) / SR  # T30 extrapolated to 60 dB
    assert rt60 == pytest.approx(0.5, rel=0.2)


def test_1000_parameter_sets_are_distinct_and_cover_ranges_evenly():
    generator = VariationGenerator(create_augmentation_config(variation_count=1000), sample_rate=SR)
    params = generator.all_params()
    assert len(params) == 1000
    keys = {json.dumps({k: v for k, v in p.items() if k != "index"}, sort_keys=True) for p in params}
    assert len(keys) == 1000
    assert all(set(p) - {"index"} for p in params)  # never the original
    tempos = np.array([p["tempo"] for p in params if "tempo" in p])
    assert 0.55 < len(tempos) / 1000 < 0.65  # probability 0.6
    counts, _ = np.histogram(tempos, bins=10, range=(0.85, 1.15))
    assert counts.min() > 0.8 * len(tempos) / 10 and counts.max() < 1.2 * len(tempos) / 10
    assert {p["noise"]["color"] for p in params if "noise" in p} == {"white", "pink", "brown"}


SECOND_PROCESS = """
import hashlib, sys, numpy as np
sys.path.insert(0, {tests!r})
from test_augmentation import music_like
from cinematic.data.augmentation import VariationGenerator, create_augmentation_config
g = VariationGenerator(create_augmentation_config(variation_count=1000), sample_rate=44100)
print(hashlib.sha256(g.variation(music_like(1.0), 17).tobytes()).hexdigest())
"""


def test_variation_17_is_identical_twice_and_in_another_process():
    import hashlib
    from pathlib import Path

    config = create_augmentation_config(variation_count=1000, probabilities=dict.fromkeys(TRANSFORMS, 1.0))
    generator = VariationGenerator(config, sample_rate=SR)
    clip = music_like(1.0)
    first, second = generator.variation(clip, 17), generator.variation(clip, 17)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(
        first[..., : clip.shape[-1]], generator.variation(clip, 18)[..., : clip.shape[-1]]
    )
    default = VariationGenerator(create_augmentation_config(variation_count=1000), sample_rate=SR)
    here = hashlib.sha256(default.variation(clip, 17).tobytes()).hexdigest()
    code = SECOND_PROCESS.format(tests=str(Path(__file__).parent))
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert here == there


@pytest.mark.parametrize("index", [0, 1, 5, 17])
def test_variations_never_clip_and_keep_loudness(loud_clip, index):
    config = create_augmentation_config(variation_count=1000, probabilities=dict.fromkeys(TRANSFORMS, 1.0))
    generator = VariationGenerator(config, sample_rate=SR)
    out = generator.variation(loud_clip, index)
    assert out.dtype == np.float32 and out.shape[0] == 2
    assert np.abs(out).max() <= 1.0
    assert integrated_loudness(out, SR) == pytest.approx(integrated_loudness(loud_clip, SR), abs=1.0)


def test_generate_all_variations_returns_exactly_count_and_never_the_original():
    clip = music_like(0.5, channels=1)[0]
    generator = VariationGenerator(create_augmentation_config(variation_count=3), sample_rate=SR)
    variations = generator.generate_all_variations(clip)
    assert len(variations) == 3
    for i, wav in enumerate(variations):
        assert wav.ndim == 1
        np.testing.assert_array_equal(wav, generator.variation(clip, i))
        assert wav.shape != clip.shape or not np.allclose(wav, clip, atol=1e-3)
    assert [i for i, _ in generator.iter_variations(clip, start=1)] == [1, 2]


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="echo"):
        create_augmentation_config(10, probabilities={"echo": 0.5})
    with pytest.raises(UserError, match="tempo_range"):
        create_augmentation_config(10, tempo_range=(1.2, 0.8))


def test_augmented_dataset_is_seeded_per_epoch_and_keeps_length():
    clips = [music_like(0.3, channels=1)[0] * (i + 1) / 4 for i in range(4)]
    generator = VariationGenerator(create_augmentation_config(variation_count=50), sample_rate=SR)
    always = AugmentedDataset(clips, generator, probability=1.0, seed=3)
    out = always[1]
    assert out.shape == clips[1].shape and not np.allclose(out, clips[1])
    np.testing.assert_array_equal(out, AugmentedDataset(clips, generator, 1.0, seed=3)[1])
    never = AugmentedDataset([{"audio": c, "label": i} for i, c in enumerate(clips)], generator, 0.0)
    assert never[2]["label"] == 2 and np.array_equal(never[2]["audio"], clips[2])


def test_augment_command_writes_wavs_and_manifest(tmp_path):
    from cinematic.cli import main

    source = save_audio(tmp_path / "clip.wav", music_like(0.5), SR)
    out = tmp_path / "variations"
    code = main(["data", "augment", str(source), "--variations", "3", "--out", str(out), "--workers", "2"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["index"] for v in manifest["variations"]] == [0, 1, 2]
    generator = VariationGenerator(create_augmentation_config(variation_count=3), sample_rate=SR)
    for entry in manifest["variations"]:
        audio, sr = load_audio(out / entry["file"], mono=False)
        assert sr == SR and audio.shape[0] == 2
        assert entry == {**generator.params(entry["index"]), "file": entry["file"]}
        expected = generator.variation(load_audio(source, mono=False)[0], entry["index"])
        np.testing.assert_allclose(audio, expected, atol=2e-4)  # 16-bit PCM
