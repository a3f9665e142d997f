"""`evaluate voice`'s mel-cepstral distortion: SPTK mel-cepstra (pysptk), c0 left out, DTW, in dB.

The test signal is a synthetic vowel: a 120 Hz glottal pulse train through three formant resonators,
so the spectral envelope is known and the changes below are spectral changes of known size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from cinematic.generation.speech import MCD_DB, MCD_ORDER, mel_cepstra, mel_cepstral_distortion

SR = 22050


def vowel(seconds: float = 0.6, formants=(700.0, 1220.0, 2600.0), f0: float = 120.0) -> np.ndarray:
    n = int(seconds * SR)
    source = np.zeros(n)
    source[:: int(SR / f0)] = 1.0
    out = source
    for freq in formants:
        r = np.exp(-np.pi * 80.0 / SR)
        a = [1.0, -2 * r * np.cos(2 * np.pi * freq / SR), r * r]
        out = scipy.signal.lfilter([1.0 - r], a, out)
    out = 0.3 * out / np.abs(out).max()
    return (out + 1e-4 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)  # a little breath


def low_pass(wav: np.ndarray, cutoff: float) -> np.ndarray:
    return scipy.signal.sosfilt(scipy.signal.butter(4, cutoff, fs=SR, output="sos"), wav).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return vowel()


def test_the_constant_and_the_order_are_the_standard_ones():
    assert pytest.approx(6.1418, abs=1e-4) == MCD_DB
    assert MCD_ORDER == 24


def test_mel_cepstra_have_the_order_and_frame_rate_asked_for(reference):
    cepstra = mel_cepstra(reference, SR, hop_length=256)
    assert cepstra.shape == (len(reference) // 256 + 1, MCD_ORDER + 1) and np.isfinite(cepstra).all()


def test_identical_signals_give_zero_and_the_recording_level_does_not_count(reference):
    assert mel_cepstral_distortion(reference, reference, SR) == 0.0
    assert mel_cepstral_distortion(reference, 0.25 * reference, SR) < 1e-6  # c0 (gain) is left out


def test_a_small_spectral_change_gives_a_plausible_positive_value(reference):
    """A slightly moved first formant (700 → 750 Hz): about 1 dB (/a/ against /i/ is over 10)."""
    moved = vowel(formants=(750.0, 1220.0, 2600.0))
    mcd = mel_cepstral_distortion(reference, moved, SR)
    assert 0.3 < mcd < 3.0


def test_it_is_symmetric_and_grows_with_the_distortion(reference):
    values = [
        mel_cepstral_distortion(reference, low_pass(reference, cutoff), SR) for cutoff in (6000, 3000, 1000)
    ]
    assert values == sorted(values) and values[0] > 0.3 and values[-1] < 30
    degraded = low_pass(reference, 3000)
    assert mel_cepstral_distortion(degraded, reference, SR) == pytest.approx(values[1], rel=0.05)


def test_dtw_pairs_frames_so_a_slower_speaker_costs_little():
    """/a/ then /i/, against a longer /a/ then the same /i/: paired frame by frame a sixth of the frames
    would compare /a/ with /i/ (13.6 dB apart); DTW pairs like with like."""
    a, i = vowel(0.3), vowel(0.3, formants=(300.0, 2300.0, 3000.0))
    assert mel_cepstral_distortion(a, i, SR) > 10
    assert mel_cepstral_distortion(np.concatenate([a, i]), np.concatenate([vowel(0.45), i]), SR) < 1.0
