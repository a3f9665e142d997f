"""Audio augmentation: the seed README's 1000+ variations (DESIGN §6), usable alone, chained, on the fly
in training (`AugmentedDataset`) and exported to disk (`cinematic data augment`).

Audio is float32, shaped (samples,) for mono or (channels, samples), at the generator's sample rate.

    from cinematic.data.augmentation import create_augmentation_config, VariationGenerator

    config = create_augmentation_config(variation_count=1000)
    generator = VariationGenerator(config, sample_rate=44100)
    variations = generator.generate_all_variations(audio)      # exactly 1000, the original not among them
    for i, wav in generator.iter_variations(audio): ...        # one at a time (constant memory)
    wav = generator.variation(audio, 17)                       # the same array every time, in any process

Transforms (each a plain function):
- `time_pitch`: tempo ±15 % and pitch ±3 semitones in one pass of Signalsmith Stretch (python-stretch,
  MIT; pedalboard is GPL and is not used);
- `compress`: feed-forward RMS compressor (threshold, ratio, attack/release smoothing of the gain);
- `reverb`: convolution with a synthetic room impulse response (sparse early reflections and an
  exponentially decaying Gaussian tail with the chosen RT60, decorrelated per channel; Moorer 1979);
- `add_noise`: white/pink/brown noise shaped in the frequency domain (power ∝ f^0, f^−1, f^−2: exactly
  0, −3.01 and −6.02 dB/octave) at a target SNR;
- `equalize`: RBJ-cookbook biquads (low shelf, peaking band, high shelf) with scipy.signal;
- `stereo_width`: mid/side with the side's bass removed (bass kept mono) and its rest scaled.

A variation's parameters are a pure function of (seed, i): coordinate i of a scrambled Sobol sequence
(scipy.stats.qmc, low-discrepancy, so 1000 points cover the space evenly) picks every continuous value
and, through one coordinate per transform, whether that transform is on; per-variation random content
(the room response, the noise) comes from `numpy.random.default_rng([seed, i, k])`. Every variation
ends with loudness matched to the input (ITU-R BS.1770 via pyloudnorm, ±1 LU) and a look-ahead peak
limiter, so nothing clips.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.signal
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cinematic.errors import UserError

log = logging.getLogger(__name__)

TRANSFORMS = ("tempo", "pitch", "compression", "reverb", "noise", "eq", "width")
NOISE_COLORS = ("white", "pink", "brown")
_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectral density ∝ f^−β

# ---------------------------------------------------------------------------------------------------
# Single transforms
# ---------------------------------------------------------------------------------------------------


def _as_2d(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    audio = np.asarray(audio, dtype=np.float32)
    return (audio[None], True) if audio.ndim == 1 else (audio, False)


def _restore(audio: np.ndarray, mono: bool) -> np.ndarray:
    return np.ascontiguousarray(audio[0] if mono else audio, dtype=np.float32)


def time_pitch(
    audio: np.ndarray, sample_rate: int, tempo: float = 1.0, semitones: float = 0.0, cheaper: bool = True
) -> np.ndarray:
    """Change speed by `tempo` (1.15: 15 % faster, so 1/1.15 as long) and pitch by `semitones`, in one pass.

    Signalsmith Stretch compensates its own latency, so the output starts where the input does;
    `cheaper` selects its cheaper preset (about twice as fast here, and still clean on music and speech).
    """
    import python_stretch

    x, mono = _as_2d(audio)
    if tempo == 1.0 and semitones == 0.0:
        return _restore(x.copy(), mono)
    stretch = python_stretch.Signalsmith.Stretch()
    stretch.preset(x.shape[0], float(sample_rate), cheaper)
    stretch.setTimeFactor(float(tempo))
    stretch.setTransposeSemitones(float(semitones))
    return _restore(stretch.process(np.ascontiguousarray(x)), mono)


def compress(
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float = -20.0,
    ratio: float = 4.0,
    attack_ms: float = 10.0,
    release_ms: float = 120.0,
    block_ms: float = 5.0,
) -> np.ndarray:
    """Downward compression: above `threshold_db` (RMS, dBFS) the level rises 1/`ratio` as fast.

    The detector works on `block_ms` blocks (channels linked), the gain is smoothed with separate
    attack/release time constants, then interpolated back to every sample. No make-up gain here:
    the variation's loudness matching restores the level.
    """
    x, mono = _as_2d(audio)
    block = max(1, int(sample_rate * block_ms / 1000))
    n_blocks = max(1, math.ceil(x.shape[1] / block))
    padded = np.pad(x, ((0, 0), (0, n_blocks * block - x.shape[1])))
    power = (padded.reshape(x.shape[0], n_blocks, block) ** 2).mean(axis=(0, 2))
    level_db = 10 * np.log10(power + 1e-12)
    target_db = np.minimum(0.0, (threshold_db - level_db) * (1.0 - 1.0 / ratio))
    attack = math.exp(-block_ms / max(attack_ms, 1e-3))
    release = math.exp(-block_ms / max(release_ms, 1e-3))
    gain_db = np.empty_like(target_db)
    state = 0.0
    for k, target in enumerate(target_db.tolist()):  # ~200 blocks per second: a cheap loop
        coeff = attack if target < state else release
        state = coeff * state + (1.0 - coeff) * target
        gain_db[k] = state
    centres = (np.arange(n_blocks) + 0.5) * block
    gain = 10 ** (np.interp(np.arange(x.shape[1]), centres, gain_db) / 20)
    return _restore(x * gain.astype(np.float32), mono)


def room_impulse_response(
    sample_rate: int,
    rt60: float,
    rng: np.random.Generator,
    channels: int = 1,
    predelay_ms: float = 10.0,
    early_reflections: int = 8,
) -> np.ndarray:
    """A synthetic room response (channels, taps) with unit energy per channel, direct path excluded.

    Early part: sparse reflections in the first 5–50 ms after the pre-delay. Late part: Gaussian noise
    with amplitude exp(−ln(1000)·t/RT60), i.e. 60 dB of decay after RT60 seconds, high frequencies damped
    a little faster by a gentle low-pass. Each channel has its own noise, so stereo stays decorrelated.
    """
    length = int(sample_rate * (predelay_ms / 1000 + min(rt60, 3.0)))
    start = int(sample_rate * predelay_ms / 1000)
    t = np.arange(length - start) / sample_rate
    envelope = np.exp(-math.log(1000.0) * t / rt60).astype(np.float32)
    tail = rng.standard_normal((channels, length - start)).astype(np.float32) * envelope
    sos = scipy.signal.butter(1, min(0.45 * sample_rate, 6000.0), fs=sample_rate, output="sos")
    tail = scipy.signal.sosfilt(sos, tail, axis=-1).astype(np.float32)
    ir = np.zeros((channels, length), dtype=np.float32)
    ir[:, start:] = tail
    for _ in range(early_reflections):
        delay = start + int(rng.uniform(0.005, 0.05) * sample_rate)
        if delay < length:
            ir[:, delay] += rng.uniform(0.3, 1.0, size=channels).astype(np.float32) * rng.choice(
                [-1, 1], channels
            )
    return ir / np.sqrt((ir**2).sum(axis=1, keepdims=True) + 1e-12)


def reverb(
    audio: np.ndarray,
    sample_rate: int,
    rt60: float = 0.5,
    wet: float = 0.2,
    rng: np.random.Generator | None = None,
    predelay_ms: float = 10.0,
) -> np.ndarray:
    """Room simulation: (1 − wet)·dry + wet·(dry ∗ room response), same length as the input."""
    x, mono = _as_2d(audio)
    rng = rng if rng is not None else np.random.default_rng(0)
    ir = room_impulse_response(sample_rate, rt60, rng, channels=x.shape[0], predelay_ms=predelay_ms)
    wet_signal = scipy.signal.oaconvolve(x, ir, axes=-1)[:, : x.shape[1]]
    return _restore((1.0 - wet) * x + wet * wet_signal, mono)


def colored_noise(
    n: int,
    color: Literal["white", "pink", "brown"],
    rng: np.random.Generator,
    channels: int = 1,
    sample_rate: int = 44100,
    fmin: float = 20.0,
) -> np.ndarray:
    """Unit-RMS noise (channels, n) whose power spectrum falls as f^−β (β = 0, 1, 2 for white, pink, brown).

    A white Gaussian spectrum is shaped in the frequency domain by f^−β/2 (exact slope: −3.01 dB/octave for
    pink, −6.02 for brown); below `fmin` the spectrum is held flat so the noise has no huge rumble.
    """
    if color not in _NOISE_EXPONENT:
        raise ValueError(f"unknown noise color {color!r}; use one of {NOISE_COLORS}")
    beta = _NOISE_EXPONENT[color]
    if beta:
        # The spectrum of white Gaussian noise is itself complex Gaussian, so it is drawn directly and
        # shaped, saving the forward FFT.
        size = scipy.fft.next_fast_len(n, real=True)
        bins = size // 2 + 1
        spectrum = rng.standard_normal((channels, bins), dtype=np.float32) + 1j * rng.standard_normal(
            (channels, bins), dtype=np.float32
        )
        freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
        shape = np.maximum(freqs, fmin) ** (-beta / 2)
        shape[0] = 0.0  # no DC offset
        white = scipy.fft.irfft(spectrum * shape.astype(np.float32), n=size, axis=-1)
    else:
        white = rng.standard_normal((channels, n), dtype=np.float32)
    noise = white[:, :n]
    return (noise / (np.sqrt((noise**2).mean(axis=-1, keepdims=True)) + 1e-12)).astype(np.float32)


def add_noise(
    audio: np.ndarray,
    sample_rate: int,
    snr_db: float = 30.0,
    color: Literal["white", "pink", "brown"] = "white",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Add colored noise so that signal power / noise power = `snr_db` (per channel)."""
    x, mono = _as_2d(audio)
    rng = rng if rng is not None else np.random.default_rng(0)
    noise = colored_noise(x.shape[1], color, rng, channels=x.shape[0], sample_rate=sample_rate)
    signal_rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=-1, keepdims=True))
    return _restore(x + noise * (signal_rms * 10 ** (-snr_db / 20)).astype(np.float32), mono)


def _biquad(kind: str, freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One RBJ Audio-EQ-Cookbook biquad as a second-order section [b0 b1 b2 1 a1 a2]."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * min(freq, 0.45 * sample_rate) / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        root = 2 * math.sqrt(a) * alpha
        sign = 1 if kind == "low_shelf" else -1
        b = [
            a * ((a + 1) - sign * (a - 1) * cos + root),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
            a * ((a + 1) - sign * (a - 1) * cos - root),
        ]
        den = [
            (a + 1) + sign * (a - 1) * cos + root,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
            (a + 1) + sign * (a - 1) * cos - root,
        ]
    return np.array(b + den, dtype=np.float64) / den[0]


def equalize(
    audio: np.ndarray,
    sample_rate: int,
    low_gain_db: float = 0.0,
    mid_gain_db: float = 0.0,
    mid_freq: float = 1000.0,
    high_gain_db: float = 0.0,
    low_freq: float = 150.0,
    high_freq: float = 6000.0,
    mid_q: float = 1.0,
) -> np.ndarray:
    """Three-band EQ: low shelf at `low_freq`, peaking band at `mid_freq`, high shelf at `high_freq`."""
    x, mono = _as_2d(audio)
    sos = np.stack(
        [
            _biquad("low_shelf", low_freq, low_gain_db, 0.707, sample_rate),
            _biquad("peak", mid_freq, mid_gain_db, mid_q, sample_rate),
            _biquad("high_shelf", high_freq, high_gain_db, 0.707, sample_rate),
        ]
    )
    return _restore(scipy.signal.sosfilt(sos, x, axis=-1), mono)


def stereo_width(
    audio: np.ndarray, sample_rate: int, width: float = 1.0, bass_mono_hz: float = 150.0
) -> np.ndarray:
    """Mid/side width: side := width · high-pass(side). Below `bass_mono_hz` the side is removed, so the
    bass is mono; width 0 gives L == R, > 1 widens. Mono input (or not 2 channels) is returned unchanged."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != 2:
        return x.copy()
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    if width == 0.0:
        side = np.zeros_like(side)
    else:
        sos = scipy.signal.butter(4, bass_mono_hz, btype="highpass", fs=sample_rate, output="sos")
        side = width * scipy.signal.sosfilt(sos, side).astype(np.float32)
    return np.stack([mid + side, mid - side]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Loudness and peak safety
# ---------------------------------------------------------------------------------------------------


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4; see `cinematic.data.audio.integrated_loudness`)."""
    from cinematic.data.audio import integrated_loudness

    return integrated_loudness(audio, sample_rate)


def limit(
    audio: np.ndarray, sample_rate: int, ceiling: float = 0.98, lookahead_ms: float = 3.0
) -> np.ndarray:
    """Look-ahead peak limiter: the result never exceeds `ceiling`.

    The needed gain per sample is min(1, ceiling/|x|) over channels; a running minimum over ±L samples
    followed by a ±L moving average smooths it, and since every sample's own requirement is inside
    each window the average stays at or below it (so no sample overshoots).
    """
    x, mono = _as_2d(audio)
    peak = np.abs(x).max(axis=0)
    if peak.size == 0 or peak.max() <= ceiling:
        return _restore(x, mono)
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    half = max(1, int(sample_rate * lookahead_ms / 1000))
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    gain = uniform_filter1d(
        minimum_filter1d(need, 2 * half + 1, mode="nearest"), 2 * half + 1, mode="nearest"
    )
    out = x * np.minimum(gain, need).astype(np.float32)  # the min guards against float rounding
    return _restore(np.clip(out, -ceiling, ceiling), mono)


def match_loudness(
    audio: np.ndarray, sample_rate: int, target_lufs: float, ceiling: float = 0.98
) -> np.ndarray:
    """Gain to `target_lufs`, then the limiter; repeated (at most three times) when limiting pulled the
    loudness down by more than 0.3 LU."""
    out = np.asarray(audio, dtype=np.float32)
    if not math.isfinite(target_lufs):
        return limit(out, sample_rate, ceiling)
    current = loudness(out, sample_rate)
    for _ in range(3):
        if not math.isfinite(current):
            break
        gained = out * np.float32(10 ** ((target_lufs - current) / 20))
        if np.abs(gained).max() <= ceiling:
            return gained  # a pure gain lands exactly on the target: no need to measure again
        out = limit(gained, sample_rate, ceiling)
        current = loudness(out, sample_rate)
        if abs(current - target_lufs) <= 0.3:
            break
    return limit(out, sample_rate, ceiling)


# ---------------------------------------------------------------------------------------------------
# Configuration and the variation generator
# ---------------------------------------------------------------------------------------------------


class AugmentationConfig(BaseModel):
    """What a variation may do. Each range is (low, high); each transform is on with its probability."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    variation_count: int = Field(1000, ge=1)
    """How many variations `generate_all_variations` returns (the original is never one of them)."""
    seed: int = 0
    """Variation i depends only on (seed, i)."""
    probabilities: dict[str, float] = Field(
        default_factory=lambda: {
            "tempo": 0.6,
            "pitch": 0.6,
            "compression": 0.5,
            "reverb": 0.5,
            "noise": 0.5,
            "eq": 0.7,
            "width": 0.5,
        }
    )
    """Chance that each transform is on in a variation (keys: tempo, pitch, compression, reverb, noise,
    eq, width). When a variation draws none, the one closest to its threshold is switched on."""
    tempo_range: tuple[float, float] = (0.85, 1.15)
    pitch_range: tuple[float, float] = (-3.0, 3.0)
    """Semitones."""
    compression_threshold_db: tuple[float, float] = (-30.0, -10.0)
    compression_ratio: tuple[float, float] = (1.5, 6.0)
    compression_attack_ms: float = 10.0
    compression_release_ms: float = 120.0
    reverb_rt60: tuple[float, float] = (0.2, 1.2)
    """Reverberation time in seconds (small room to hall)."""
    reverb_wet: tuple[float, float] = (0.05, 0.35)
    noise_colors: list[Literal["white", "pink", "brown"]] = Field(default_factory=lambda: list(NOISE_COLORS))
    noise_snr_db: tuple[float, float] = (20.0, 45.0)
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    """Gain range of each of the three bands (low shelf, peaking mid, high shelf)."""
    eq_mid_freq: tuple[float, float] = (250.0, 4000.0)
    """Centre of the peaking band (drawn log-uniformly)."""
    width_range: tuple[float, float] = (0.5, 1.6)
    bass_mono_hz: float = Field(150.0, gt=0)
    stretch_quality: Literal["cheaper", "default"] = "cheaper"
    """Signalsmith Stretch preset: "cheaper" is ~1.9× faster on this hardware with no audible loss for
    training data, so it is the default; "default" is the library's higher-quality preset."""
    preserve_loudness: bool = True
    """Match each variation's integrated loudness to the input (±1 LU)."""
    peak_ceiling: float = Field(0.98, gt=0, le=1.0)
    """Limiter ceiling: no output sample exceeds it."""

    @model_validator(mode="after")
    def _check(self) -> AugmentationConfig:
        unknown = set(self.probabilities) - set(TRANSFORMS)
        if unknown:
            raise ValueError(
                f"unknown transforms in probabilities: {sorted(unknown)}; known: {list(TRANSFORMS)}"
            )
        for name in TRANSFORMS:
            p = self.probabilities.setdefault(name, 0.0)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probability of {name} must be in [0, 1], got {p}")
        if not any(self.probabilities.values()):
            raise ValueError("at least one transform needs a probability above 0")
        if not self.noise_colors:
            raise ValueError("noise_colors must not be empty")
        for name in (
            "tempo_range",
            "pitch_range",
            "compression_threshold_db",
            "compression_ratio",
            "reverb_rt60",
            "reverb_wet",
            "noise_snr_db",
            "eq_gain_db",
            "eq_mid_freq",
            "width_range",
        ):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low {low} > high {high}")
        if self.tempo_range[0] <= 0 or self.reverb_rt60[0] <= 0 or self.eq_mid_freq[0] <= 0:
            raise ValueError("tempo, reverb_rt60 and eq_mid_freq ranges must be positive")
        return self


def create_augmentation_config(variation_count: int = 1000, **overrides: Any) -> AugmentationConfig:
    """The seed README's entry point: the default augmentation settings for `variation_count` variations.

    Any `AugmentationConfig` field can be overridden, e.g. `probabilities={"reverb": 1.0, ...}`.
    """
    try:
        return AugmentationConfig(variation_count=variation_count, **overrides)
    except ValueError as exc:
        raise UserError(f"invalid augmentation settings: {exc}") from exc


# Sobol coordinates: one per continuous value, then one gate per transform.
_DIMS = (
    "tempo",
    "pitch",
    "comp_threshold",
    "comp_ratio",
    "rt60",
    "wet",
    "noise_color",
    "snr",
    "eq_low",
    "eq_mid",
    "eq_mid_freq",
    "eq_high",
    "width",
)
_N_DIMS = len(_DIMS) + len(TRANSFORMS)


def _lerp(u: float, bounds: tuple[float, float]) -> float:
    return bounds[0] + u * (bounds[1] - bounds[0])


class VariationGenerator:
    """Maps (seed, i) to a parameter set and applies it. Variation i is the same in every process."""

    def __init__(self, config: AugmentationConfig | None = None, sample_rate: int = 44100):
        self.config = config if config is not None else create_augmentation_config()
        self.sample_rate = int(sample_rate)
        self._points = self._sobol(0, self.config.variation_count)

    # --- parameters ---------------------------------------------------------------------------------

    def _sobol(self, start: int, count: int) -> np.ndarray:
        from scipy.stats import qmc

        engine = qmc.Sobol(
            _N_DIMS, scramble=True, seed=np.random.default_rng([self.config.seed & 0xFFFFFFFF, 7])
        )
        if start:
            engine.fast_forward(start)
        # Only the first power-of-two prefix has Sobol's full balance properties; any prefix is still
        # far more even than independent draws, so the warning about that is silenced.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return engine.random(count)

    def _point(self, index: int) -> np.ndarray:
        if index < 0:
            raise IndexError(f"variation index must be ≥ 0, got {index}")
        if index < len(self._points):
            return self._points[index]
        return self._sobol(index, 1)[0]

    def params(self, index: int) -> dict[str, Any]:
        """Variation `index`'s parameters as plain JSON values; a transform is present only when on."""
        cfg = self.config
        u = dict(zip(_DIMS, self._point(index)[: len(_DIMS)].tolist(), strict=True))
        gates = self._point(index)[len(_DIMS) :]
        probs = np.array([cfg.probabilities[name] for name in TRANSFORMS])
        on = gates < probs
        if not on.any():  # the original is not a variation: switch on the transform nearest its threshold
            on[int(np.argmax(probs - gates))] = True
        active = {name for name, flag in zip(TRANSFORMS, on, strict=True) if flag}
        params: dict[str, Any] = {"index": int(index)}
        if "tempo" in active:
            params["tempo"] = round(_lerp(u["tempo"], cfg.tempo_range), 6)
        if "pitch" in active:
            params["pitch_semitones"] = round(_lerp(u["pitch"], cfg.pitch_range), 6)
        if "eq" in active:
            low_f, high_f = cfg.eq_mid_freq
            params["eq"] = {
                "low_gain_db": round(_lerp(u["eq_low"], cfg.eq_gain_db), 4),
                "mid_gain_db": round(_lerp(u["eq_mid"], cfg.eq_gain_db), 4),
                "mid_freq": round(low_f * (high_f / low_f) ** u["eq_mid_freq"], 2),
                "high_gain_db": round(_lerp(u["eq_high"], cfg.eq_gain_db), 4),
            }
        if "compression" in active:
            params["compression"] = {
                "threshold_db": round(_lerp(u["comp_threshold"], cfg.compression_threshold_db), 4),
                "ratio": round(_lerp(u["comp_ratio"], cfg.compression_ratio), 4),
                "attack_ms": cfg.compression_attack_ms,
                "release_ms": cfg.compression_release_ms,
            }
        if "reverb" in active:
            params["reverb"] = {
                "rt60": round(_lerp(u["rt60"], cfg.reverb_rt60), 4),
                "wet": round(_lerp(u["wet"], cfg.reverb_wet), 4),
            }
        if "width" in active:
            params["width"] = round(_lerp(u["width"], cfg.width_range), 4)
        if "noise" in active:
            colors = cfg.noise_colors
            params["noise"] = {
                "color": colors[min(int(u["noise_color"] * len(colors)), len(colors) - 1)],
                "snr_db": round(_lerp(u["snr"], cfg.noise_snr_db), 4),
            }
        return params

    def all_params(self, count: int | None = None) -> list[dict[str, Any]]:
        return [self.params(i) for i in range(self.config.variation_count if count is None else count)]

    def manifest(self, count: int | None = None, files: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready record of the settings and each variation's parameters (and file, when exported)."""
        variations = self.all_params(count)
        if files is not None:
            for entry, name in zip(variations, files, strict=True):
                entry["file"] = name
        return {
            "sample_rate": self.sample_rate,
            "config": self.config.model_dump(mode="json"),
            "variations": variations,
        }

    # --- audio --------------------------------------------------------------------------------------

    def apply(
        self, audio: np.ndarray, params: dict[str, Any], target_lufs: float | None = None
    ) -> np.ndarray:
        """Run one parameter set over `audio` (order: stretch, EQ, compression, reverb, width, noise,
        then loudness matching to `target_lufs`, by default the input's, and the limiter)."""
        cfg, sr, index = self.config, self.sample_rate, params["index"]
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] == 0:
            raise ValueError(
                f"audio must be non-empty (samples,) or (channels, samples), got shape {x.shape}"
            )
        x = np.nan_to_num(x)
        if target_lufs is None:
            target_lufs = loudness(x, sr) if cfg.preserve_loudness else -math.inf
        if "tempo" in params or "pitch_semitones" in params:
            x = time_pitch(
                x,
                sr,
                params.get("tempo", 1.0),
                params.get("pitch_semitones", 0.0),
                cheaper=cfg.stretch_quality == "cheaper",
            )
        if "eq" in params:
            x = equalize(x, sr, **params["eq"])
        if "compression" in params:
            x = compress(x, sr, **params["compression"])
        if "reverb" in params:
            x = reverb(
                x, sr, rng=np.random.default_rng([cfg.seed & 0xFFFFFFFF, index, 1]), **params["reverb"]
            )
        if "width" in params:
            x = stereo_width(x, sr, params["width"], bass_mono_hz=cfg.bass_mono_hz)
        if "noise" in params:
            x = add_noise(
                x, sr, rng=np.random.default_rng([cfg.seed & 0xFFFFFFFF, index, 2]), **params["noise"]
            )
        if cfg.preserve_loudness:
            return match_loudness(x, sr, target_lufs, cfg.peak_ceiling)
        return limit(x, sr, cfg.peak_ceiling)

    def variation(self, audio: np.ndarray, index: int, target_lufs: float | None = None) -> np.ndarray:
        """Variation `index` of `audio` (any index ≥ 0, also beyond `variation_count`). `target_lufs`
        saves re-measuring the input when many variations of one clip are made."""
        return self.apply(audio, self.params(index), target_lufs)

    def _target(self, audio: np.ndarray) -> float:
        return (
            loudness(np.nan_to_num(np.asarray(audio, dtype=np.float32)), self.sample_rate)
            if (self.config.preserve_loudness)
            else -math.inf
        )

    def iter_variations(
        self, audio: np.ndarray, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(i, variation i) for i in [start, stop), one at a time: memory stays that of one clip."""
        target = self._target(audio)
        for index in range(start, self.config.variation_count if stop is None else stop):
            yield index, self.variation(audio, index, target)

    def generate_all_variations(self, audio: np.ndarray) -> list[np.ndarray]:
        """Exactly `variation_count` variations (the original is not among them), as a list of arrays.
        For long clips prefer `iter_variations` or `export`, which do not hold every copy in memory."""
        return [wav for _, wav in self.iter_variations(audio)]

    def export(
        self,
        audio: np.ndarray,
        out_dir: str | Path,
        count: int | None = None,
        workers: int | None = None,
        subtype: str = "PCM_16",
        progress: bool | None = None,
        stem: str = "variation",
        on_written: Callable[[int], None] | None = None,
    ) -> Path:
        """Write `count` variations as WAV files plus `manifest.json` to `out_dir`, in worker processes
        (`on_written(i)` is called in this process once variation i is on disk, in order)."""
        from tqdm import tqdm

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        count = self.config.variation_count if count is None else count
        digits = max(4, len(str(count - 1)))
        files = [f"{stem}_{i:0{digits}d}.wav" for i in range(count)]
        workers = _default_workers() if workers is None else max(1, workers)
        bar = tqdm(total=count, desc="augment", unit="var", disable=not _show_progress(progress))
        if workers == 1:
            _init_worker(self, audio, out_dir, subtype)
            for i in range(count):
                _write_variation((i, files[i]))
                bar.update()
                if on_written:
                    on_written(i)
        else:
            import multiprocessing

            context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            with ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self, audio, out_dir, subtype),
            ) as pool:
                for i, _ in enumerate(pool.map(_write_variation, enumerate(files), chunksize=4)):
                    bar.update()
                    if on_written:
                        on_written(i)
        bar.close()
        from cinematic.utils import atomic_write_bytes

        manifest = self.manifest(count, files)
        atomic_write_bytes(out_dir / "manifest.json", json.dumps(manifest, indent=1).encode())
        return out_dir / "manifest.json"


def _default_workers() -> int:
    return max(
        1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )


def _show_progress(progress: bool | None) -> bool:
    import sys

    return sys.stderr.isatty() if progress is None else progress


_WORKER: dict[str, Any] = {}


def _init_worker(generator: VariationGenerator, audio: np.ndarray, out_dir: Path, subtype: str) -> None:
    _WORKER.update(
        generator=generator, audio=audio, out_dir=out_dir, subtype=subtype, target=generator._target(audio)
    )


def _write_variation(job: tuple[int, str]) -> None:
    import soundfile as sf

    index, name = job
    gen: VariationGenerator = _WORKER["generator"]
    wav = gen.variation(_WORKER["audio"], index, _WORKER["target"])
    # Written under a temporary name and renamed, so a half-written file never has the final name; no
    # fsync per file (1000 of them would cost more than the audio work): the manifest comes last.
    path = Path(_WORKER["out_dir"]) / name
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    sf.write(
        str(tmp), wav.T if wav.ndim == 2 else wav, gen.sample_rate, subtype=_WORKER["subtype"], format="WAV"
    )
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# On-the-fly augmentation in training
# ---------------------------------------------------------------------------------------------------


class AugmentedDataset:
    """Wraps a dataset of audio arrays (or dicts with an `audio` key): with `probability`, item i of the
    current epoch is replaced by a random variation, chosen by `item_rng(seed, epoch, i)` so a resumed
    run augments exactly like an uninterrupted one. With `keep_length` the result is cropped or
    zero-padded back to the input length (tempo changes length), so batches keep their shapes.
    """

    def __init__(
        self,
        dataset: Any,
        generator: VariationGenerator,
        probability: float,
        seed: int = 0,
        key: str = "audio",
        keep_length: bool = True,
    ):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        self.dataset = dataset
        self.generator = generator
        self.probability = probability
        self.seed = seed
        self.key = key
        self.keep_length = keep_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _augment(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        index = int(rng.integers(0, self.generator.config.variation_count))
        out = self.generator.variation(np.asarray(audio, dtype=np.float32), index)
        if self.keep_length:
            n = np.shape(audio)[-1]
            out = out[..., :n]
            if out.shape[-1] < n:
                out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, n - out.shape[-1])])
        return out

    def __getitem__(self, index: int) -> Any:
        from cinematic.utils import item_rng

        item = self.dataset[index]
        rng = item_rng(self.seed, self.epoch, index)
        if self.probability == 0.0 or rng.random() >= self.probability:
            return item
        if isinstance(item, dict):
            audio = item[self.key]
            is_tensor = hasattr(audio, "numpy")
            out = self._augment(audio.numpy() if is_tensor else audio, rng)
            if is_tensor:
                import torch

                out = torch.from_numpy(out)
            return {**item, self.key: out}
        return self._augment(item, rng)


# ---------------------------------------------------------------------------------------------------
# `cinematic data augment IN.wav --variations N --out DIR`
# ---------------------------------------------------------------------------------------------------


def augment_command(args: Any) -> int:
    from cinematic.data.audio import load_audio

    if args.variations < 1:
        raise UserError(f"--variations must be at least 1, got {args.variations}")
    subtype = str(args.subtype).upper()
    import soundfile as sf

    if not sf.check_format("WAV", subtype):
        raise UserError(f"--subtype {args.subtype!r} is not a WAV subtype; use PCM_16, PCM_24 or FLOAT")
    audio, sr = load_audio(args.input, mono=False)
    if audio.shape[0] == 1:
        audio = audio[0]
    config = create_augmentation_config(variation_count=args.variations, seed=args.seed)
    generator = VariationGenerator(config, sample_rate=sr)
    manifest = generator.export(
        audio, args.out, workers=args.workers, subtype=subtype, stem=Path(args.input).stem
    )
    print(f"wrote {args.variations} variations of {args.input} and {manifest}")
    return 0
