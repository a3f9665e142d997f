"""Mixing a song: vocals over an accompaniment at −14 LUFS, never clipping.

    result = mix_song(vocals, accompaniment, 44100)     # vocals (N,), accompaniment (2, N)
    result.song                                         # (2, N) float32, −14 LUFS integrated, peak ≤ −1 dBFS
    result.gains["vocals"] * result.vocals + result.gains["accompaniment"] * result.accompaniment == result.song

1. The vocal level is set relative to the accompaniment: the vocal stem is scaled so that its integrated
   loudness (ITU-R BS.1770, pyloudnorm) is `vocal_db` (default +2 dB) above the accompaniment's, so the
   words stay in front whatever level each stem came with.
2. The sum is scaled to the target integrated loudness (−14 LUFS, the level streaming services play at).
3. A look-ahead peak limiter keeps every sample at or under the ceiling (−1 dBFS): the gain each sample
   needs is min(1, ceiling/|x|) over both channels; the running minimum of that over the next `lookahead`
   seconds, averaged over the same window, is never above the needed gain (each average is over minima
   that all include the sample) and has no steps (a box-filtered attack and release). The limiter takes
   loudness away; steps 2–3 repeat (at most 4 times) until the song is within 0.1 LU of the target.
4. The limiter's gain curve is one curve for the whole mix, so it is applied to both stems; the stems
   are then rounded to 16-bit values and the song is computed from the rounded stems. Therefore
   `vocals.wav` × gain + `accompaniment.wav` × gain equals `song.wav` up to its own 16-bit rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TARGET_LUFS = -14.0
CEILING_DB = -1.0
VOCAL_DB = 2.0
STEM_PEAK = 0.89
"""Stems are stored with this peak; their gains in the mix are recorded beside them."""
_Q = 32767.0


@dataclass
class MixResult:
    song: np.ndarray
    """(2, N) float32 at the sample rate of the inputs."""
    vocals: np.ndarray
    """(N,) float32, on the 16-bit grid: what vocals.wav holds."""
    accompaniment: np.ndarray
    """(2, N) float32, on the 16-bit grid: what accompaniment.wav holds."""
    gains: dict[str, float]
    """Linear gains of the stems in the song."""
    loudness: float
    """Integrated loudness of the song, LUFS."""
    peak_db: float
    limiter_reduction_db: float
    """The most the limiter turned the song down, dB (0: it never acted)."""


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of (N,) or (C, N) audio; −inf for silence."""
    import pyloudnorm

    data = np.asarray(audio, dtype=np.float64)
    data = data.T if data.ndim == 2 else data
    if not np.any(data):
        return float("-inf")
    # pyloudnorm needs at least one 400 ms block
    minimum = int(0.4 * sample_rate) + 1
    if data.shape[0] < minimum:
        pad = [(0, minimum - data.shape[0])] + ([(0, 0)] if data.ndim == 2 else [])
        data = np.pad(data, pad)
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


def limiter_gain(audio: np.ndarray, sample_rate: int, ceiling: float, lookahead: float = 0.005) -> np.ndarray:
    """(N,) gain in (0, 1] that keeps `audio` (C, N) at or under `ceiling` (see the module docstring)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.abs(audio).max(axis=0)
    needed = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if needed.min() >= 1.0:
        return np.ones_like(needed)
    width = max(1, int(lookahead * sample_rate))
    # minimum over [t, t + width) ...
    ahead = minimum_filter1d(needed, size=width, origin=-(width // 2), mode="nearest")
    # ... averaged over [t - width + 1, t]
    smooth = uniform_filter1d(ahead, size=width, origin=(width - 1) // 2, mode="nearest")
    return np.minimum(smooth, needed)  # float rounding of the average must not let a sample through


def _quantize(audio: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(audio, -1.0, 1.0) * _Q) / _Q).astype(np.float32)


def mix_song(
    vocals: np.ndarray,
    accompaniment: np.ndarray,
    sample_rate: int,
    target_lufs: float = TARGET_LUFS,
    vocal_db: float = VOCAL_DB,
    ceiling_db: float = CEILING_DB,
) -> MixResult:
    """Mix mono `vocals` (N,) with stereo `accompaniment` (2, M); the shorter is padded with silence."""
    n = max(len(vocals), accompaniment.shape[1])
    voc = np.zeros(n)
    voc[: len(vocals)] = vocals
    acc = np.zeros((2, n))
    acc[:, : accompaniment.shape[1]] = accompaniment
    ceiling = 10 ** (ceiling_db / 20)

    # the vocal as it sits in the mix: the same signal in both channels
    voc_loud, acc_loud = loudness(np.stack([voc, voc]), sample_rate), loudness(acc, sample_rate)
    relative = 1.0
    if np.isfinite(voc_loud) and np.isfinite(acc_loud):
        relative = 10 ** ((acc_loud + vocal_db - voc_loud) / 20)
    dry = acc + relative * voc[None, :]  # (2, N), vocals in the centre
    base = loudness(dry, sample_rate)
    gain = 10 ** ((target_lufs - base) / 20) if np.isfinite(base) else 1.0
    envelope = np.ones(n)
    for _ in range(4):
        envelope = limiter_gain(gain * dry, sample_rate, ceiling)
        if envelope.min() >= 1.0:  # the limiter did nothing: the level is the target already
            break
        level = loudness(gain * dry * envelope, sample_rate)
        if not np.isfinite(level) or abs(level - target_lufs) <= 0.1:
            break
        gain *= 10 ** ((target_lufs - level) / 20)

    # stems as stored: the shared limiter curve applied, scaled to a fixed peak, on the 16-bit grid
    voc_limited = voc * envelope
    acc_limited = acc * envelope[None, :]
    voc_scale = STEM_PEAK / max(np.abs(voc_limited).max(), 1e-12)
    acc_scale = STEM_PEAK / max(np.abs(acc_limited).max(), 1e-12)
    voc_stem = _quantize(voc_limited * voc_scale)
    acc_stem = _quantize(acc_limited * acc_scale)
    gains = {
        "vocals": float(gain * relative / voc_scale) if np.any(voc_stem) else 0.0,
        "accompaniment": float(gain / acc_scale) if np.any(acc_stem) else 0.0,
    }
    song = gains["vocals"] * voc_stem.astype(np.float64)[None, :] + gains["accompaniment"] * acc_stem
    song = np.clip(song, -ceiling, ceiling)  # only 16-bit rounding of the stems can reach past it
    peak = float(np.abs(song).max()) if song.size else 0.0
    return MixResult(
        song=song.astype(np.float32),
        vocals=voc_stem,
        accompaniment=acc_stem,
        gains=gains,
        loudness=loudness(song, sample_rate),
        peak_db=float(20 * np.log10(peak)) if peak > 0 else float("-inf"),
        limiter_reduction_db=float(-20 * np.log10(envelope.min())) if n else 0.0,
    )
