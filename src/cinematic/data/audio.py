"""Audio I/O and features: load/save (soundfile), resampling (soxr), the log-mel front end shared by
acoustic models and vocoders (torch.stft + a Slaney mel filterbank from librosa), pitch and energy.

The mel follows HiFi-GAN's reference front end: reflect-pad (n_fft − hop)/2 on both sides, no centering,
magnitude (not power) spectrogram, natural log clamped at 1e-5. So a clip of N·hop samples gives
exactly N frames, and a vocoder's output length is frames × hop.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cinematic.configs.model_config import MelConfig
from cinematic.data.skips import UnreadableFile
from cinematic.errors import UserError
from cinematic.utils import atomic_write_bytes

LOG_MEL_FLOOR = 1e-5


class MelSpectrogram(nn.Module):
    """Waveform (B, T) or (T,) in [-1, 1] → log-mel (B, n_mels, T // hop) or (n_mels, T // hop)."""

    def __init__(self, cfg: MelConfig):
        super().__init__()
        import librosa

        self.cfg = cfg
        fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
        basis = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=fmax
        )
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        if (cfg.n_fft - cfg.hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even, got {cfg.n_fft} - {cfg.hop_length}")

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear magnitude spectrogram (B, n_fft // 2 + 1, frames)."""
        pad = (self.cfg.n_fft - self.cfg.hop_length) // 2
        wav = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            wav,
            self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        squeeze = wav.dim() == 1
        if squeeze:
            wav = wav.unsqueeze(0)
        mel = torch.matmul(self.mel_basis, self.magnitude(wav.float()))
        mel = torch.log(torch.clamp(mel, min=LOG_MEL_FLOOR))
        return mel.squeeze(0) if squeeze else mel


_MEL_CACHE: dict[str, MelSpectrogram] = {}


def mel_spectrogram(wav: torch.Tensor | np.ndarray, cfg: MelConfig) -> torch.Tensor:
    """Functional form of `MelSpectrogram` (the module is built once per config)."""
    key = cfg.model_dump_json()
    module = _MEL_CACHE.get(key)
    if module is None:
        module = _MEL_CACHE[key] = MelSpectrogram(cfg)
    tensor = torch.as_tensor(wav, dtype=torch.float32)
    return module.to(tensor.device)(tensor)


# ---------------------------------------------------------------------------------------------------
# File I/O, resampling, segmenting
# ---------------------------------------------------------------------------------------------------

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
"""File types `load_audio` reads (libsndfile ≥ 1.1 decodes mp3)."""

_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32: (samples,) when `mono` (channels averaged), else (channels, samples).

    With `sample_rate` the audio is resampled (soxr, high quality) and that rate is returned. A missing,
    empty, corrupt or unreadable file raises `UserError` naming it.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # libsndfile reports corrupt data with several exception types
        raise UnreadableFile(path, f"cannot decode audio ({exc}); is it a valid wav/flac/ogg/mp3?") from None
    audio = data.T  # (channels, samples)
    if mono:
        audio = audio.mean(axis=0)
    if sample_rate is not None and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(sample_rate, channels, frames) from the header alone; `UserError` when it cannot be read."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise UserError(f"cannot read audio header of {path}: {exc}") from exc
    return int(info.samplerate), int(info.channels), int(info.frames)


def save_audio(
    path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write (samples,) or (channels, samples) audio atomically; the format follows the suffix (wav default).

    Peak-safe: audio whose peak exceeds 1.0 is scaled down to 0.999 rather than clipped, and NaN/inf
    become 0, so an integer PCM file never wraps around.
    """
    import soundfile as sf

    path = Path(path)
    data = (
        torch.as_tensor(audio).detach().cpu().numpy()
        if isinstance(audio, torch.Tensor)
        else np.asarray(audio)
    )
    data = np.nan_to_num(data.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if data.ndim not in (1, 2) or (data.ndim == 2 and data.shape[0] > 64):
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {data.shape}")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0:
        data = data * (0.999 / peak)
    buffer = io.BytesIO()
    fmt = _FORMATS.get(path.suffix.lower(), "WAV")
    sf.write(
        buffer,
        data.T if data.ndim == 2 else data,
        int(sample_rate),
        subtype=subtype if fmt == "WAV" else None,
        format=fmt,
    )
    atomic_write_bytes(path, buffer.getvalue())
    return path


def limit_peak(audio: np.ndarray, ceiling: float) -> np.ndarray:
    """Scale `audio` down so its peak is at most `ceiling` (never clip: clipping adds distortion)."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (ceiling / peak) if peak > ceiling else audio


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (samples,) or (channels, samples) float audio with soxr (high quality); float32 out."""
    audio = np.asarray(audio, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return audio
    import soxr

    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    out = soxr.resample(
        np.ascontiguousarray(audio.T), orig_sr, target_sr, quality="HQ"
    )  # soxr wants (samples, ch)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mix or duplicate to `channels` (1 → (samples,), else (channels, samples))."""
    audio = np.asarray(audio, dtype=np.float32)
    if channels == 1:
        return audio if audio.ndim == 1 else audio.mean(axis=0)
    mono = audio if audio.ndim == 1 else None
    if mono is None and audio.shape[0] == channels:
        return audio
    if mono is None:
        mono = audio.mean(axis=0)
    return np.repeat(mono[None], channels, axis=0)


def segment(audio: np.ndarray, sample_rate: int, seconds: float, keep_last: bool = True) -> list[np.ndarray]:
    """Cut audio (along its last axis) into consecutive pieces of `seconds` each.

    The remainder after the last full piece is kept as a shorter final piece when `keep_last` (so no
    audio is lost); audio shorter than one piece gives one piece. Pieces are views, not copies.
    """
    length = max(1, int(round(seconds * sample_rate)))
    total = audio.shape[-1]
    pieces = [audio[..., start : start + length] for start in range(0, total - length + 1, length)]
    rest = total - len(pieces) * length
    if rest > 0 and (keep_last or not pieces):
        pieces.append(audio[..., total - rest :])
    return pieces


# ---------------------------------------------------------------------------------------------------
# Per-frame pitch and energy, aligned with the mel frames
# ---------------------------------------------------------------------------------------------------


def n_mel_frames(n_samples: int, hop_length: int) -> int:
    """Frames `MelSpectrogram` gives for a clip of n samples (its padding makes it n // hop)."""
    return n_samples // hop_length


def pitch_praat(
    wav: np.ndarray,
    sample_rate: int,
    hop_length: int,
    n_frames: int | None = None,
    fmin: float = 65.0,
    fmax: float = 1000.0,
) -> np.ndarray:
    """F0 in Hz per mel frame (Praat's autocorrelation method via parselmouth), 0 where unvoiced.

    Mel frame t is centred on sample t·hop + hop/2 (see `MelSpectrogram`'s padding); each frame takes
    the Praat analysis frame nearest to that time. `n_frames` defaults to len(wav) // hop.
    """
    import parselmouth

    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim == 2:
        wav = wav.mean(axis=0)
    frames = n_mel_frames(len(wav), hop_length) if n_frames is None else int(n_frames)
    f0 = np.zeros(frames, dtype=np.float32)
    # Praat needs three periods of the lowest pitch in its window; shorter clips are all unvoiced.
    if frames == 0 or len(wav) < 3.0 / fmin * sample_rate or not np.any(wav):
        return f0
    sound = parselmouth.Sound(wav, sampling_frequency=float(sample_rate))
    pitch = sound.to_pitch_ac(time_step=hop_length / sample_rate, pitch_floor=fmin, pitch_ceiling=fmax)
    values = pitch.selected_array["frequency"].astype(np.float32)
    times = np.asarray(pitch.xs())
    if len(values) == 0:
        return f0
    centres = (np.arange(frames) + 0.5) * hop_length / sample_rate
    index = np.clip(np.rint((centres - times[0]) / pitch.time_step).astype(int), 0, len(values) - 1)
    f0[:] = values[index]
    # Frames beyond the analysed range (Praat leaves half a window at each end) stay unvoiced.
    f0[np.abs(times[index] - centres) > pitch.time_step] = 0.0
    return f0


def frame_energy(wav: np.ndarray | torch.Tensor, cfg: MelConfig) -> np.ndarray:
    """FastSpeech 2's energy: L2 norm over frequency of the STFT magnitude, one value per mel frame."""
    tensor = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not isinstance(wav, torch.Tensor) else wav)
    tensor = tensor.float()
    if tensor.dim() == 2 and tensor.shape[0] <= 8:  # (channels, samples) → mono
        tensor = tensor.mean(dim=0)
    key = cfg.model_dump_json()
    module = _MEL_CACHE.get(key)
    if module is None:
        module = _MEL_CACHE[key] = MelSpectrogram(cfg)
    with torch.no_grad():
        mag = module.magnitude(tensor.unsqueeze(0))[0]  # (freq, frames)
    return torch.linalg.vector_norm(mag, dim=0).numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Loudness (ITU-R BS.1770-4)
# ---------------------------------------------------------------------------------------------------

_K_SOS: dict[int, np.ndarray] = {}


def _k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770's K-weighting (high shelf + high pass) as second-order sections, designed for any rate
    with pyloudnorm's coefficient formulas."""
    sos = _K_SOS.get(sample_rate)
    if sos is None:
        import pyloudnorm

        meter = pyloudnorm.Meter(sample_rate)
        stages = [meter._filters["high_shelf"], meter._filters["high_pass"]]
        sos = np.stack([np.concatenate([s.passband_gain * np.asarray(s.b), np.asarray(s.a)]) for s in stages])
        _K_SOS[sample_rate] = sos = sos / sos[:, 3:4]
    return sos


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS per ITU-R BS.1770-4 (400-ms blocks, 75 % overlap, −70 LUFS absolute
    and −10 LU relative gates): the same result as pyloudnorm's meter, vectorized (several times faster)
    and for any channel count (channels beyond five weigh 1.0). Clips shorter than one block use the
    ungated K-weighted mean square; silence gives −inf.
    """
    import scipy.signal

    x = np.asarray(audio, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x
    if x.shape[-1] == 0:
        return -np.inf
    # float32 filtering: twice as fast, and within 1e-6 dB of float64 on these two gentle sections
    weighted = scipy.signal.sosfilt(
        _k_weighting(int(sample_rate)).astype(np.float32), x.astype(np.float32), axis=-1
    )
    gains = np.array([1.41 if c in (3, 4) else 1.0 for c in range(x.shape[0])])
    block = int(round(0.4 * sample_rate))
    if x.shape[-1] < block:
        power = float(gains @ (weighted**2).mean(axis=-1))
        return -0.691 + 10 * np.log10(power) if power > 0 else -np.inf
    n_blocks = int(np.round((x.shape[-1] / sample_rate - 0.4) / 0.1)) + 1
    squares = weighted * weighted
    hop = 0.1 * sample_rate
    if hop == int(hop) and block == 4 * int(hop):
        # 400-ms blocks every 100 ms = sums of four consecutive 100-ms hops (no cumulative sum needed)
        hop = int(hop)
        n_hops = min(squares.shape[-1] // hop, n_blocks + 3)
        hops = squares[:, : n_hops * hop].reshape(x.shape[0], n_hops, hop).sum(axis=-1, dtype=np.float64)
        if n_hops < n_blocks + 3:  # the last block runs past the end: its partial hop counts too
            tail = squares[:, n_hops * hop :].sum(axis=-1, dtype=np.float64)[:, None]
            hops = np.concatenate([hops, tail, np.zeros((x.shape[0], n_blocks + 3 - n_hops - 1))], axis=-1)
        window = np.cumsum(np.concatenate([np.zeros((x.shape[0], 1)), hops], axis=-1), axis=-1)
        z = (window[:, 4 : 4 + n_blocks] - window[:, :n_blocks]) / block
    else:
        starts = (0.4 * 0.25 * np.arange(n_blocks) * sample_rate).astype(int)
        ends = np.minimum(starts + block, x.shape[-1])
        cumulative = np.concatenate(
            [np.zeros((x.shape[0], 1)), np.cumsum(squares, axis=-1, dtype=np.float64)], -1
        )
        z = (cumulative[:, ends] - cumulative[:, starts]) / block  # (channels, blocks) mean squares
    power = gains @ z
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(power)
    above = levels >= -70.0
    if not above.any():
        return -np.inf
    relative = -0.691 + 10 * np.log10(power[above].mean()) - 10.0
    gated = (levels > relative) & (levels > -70.0)
    return float(-0.691 + 10 * np.log10(power[gated].mean())) if gated.any() else -np.inf
