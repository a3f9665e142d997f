"""Speaker encoder for zero-shot cloning: GE2E d-vectors (Wan et al. 2018, "Generalized End-to-End Loss for
Speaker Verification", arXiv:1710.10467) from the pretrained weights the resemblyzer package ships.

The network (3-layer LSTM over 40-band log-mels of 1.6 s partial utterances, a linear layer, ReLU, L2 norm;
the d-vector is the normalised mean of the partial embeddings, §2.1) runs offline: its weights are a file
inside the installed package, nothing is downloaded. Used for the voice model's conditioning (a projection of
the d-vector is added to the speaker vector) and for the speaker-similarity metric of `evaluate voice`.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import soxr
import torch

from cinematic.errors import UserError

DVECTOR_DIM = 256
ENCODER_SAMPLE_RATE = 16000
MIN_SOUND_S = 0.1
"""Sound a clip needs for a d-vector (its quiet ends cut)."""
_TARGET_DBFS = -30.0


@functools.lru_cache(maxsize=2)
def _voice_encoder(device: str = "cpu"):  # noqa: ANN202 - resemblyzer's class
    # resemblyzer imports webrtcvad, which imports pkg_resources (setuptools < 81, pinned) and warns about it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

    # Its LSTM is randomly initialised before the pretrained weights replace it: keep that draw off the
    # global RNG, so a training run's model init does not depend on whether features were cached.
    with torch.random.fork_rng(devices=[]):
        return VoiceEncoder(device, verbose=False)


def _prepare(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz, volume normalised to −30 dBFS as in resemblyzer's preprocessing. Silence is
    trimmed only at the ends (its VAD trimming needs webrtcvad; end trimming is what matters for short clips)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim > 1:
        wav = wav.mean(axis=0 if wav.shape[0] < wav.shape[-1] else 1)
    if sample_rate != ENCODER_SAMPLE_RATE:
        wav = soxr.resample(wav, sample_rate, ENCODER_SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(wav) > 0.01 * (np.abs(wav).max() + 1e-9))
    if loud.size:
        wav = wav[loud[0] : loud[-1] + 1]
    rms = float(np.sqrt(np.mean(wav**2) + 1e-12))
    gain = 10 ** ((_TARGET_DBFS - 20 * np.log10(rms)) / 20)
    return (wav * gain).astype(np.float32)


class SpeakerEncoder:
    """wav → 256-d unit-norm d-vector. `embed` for one clip, `embed_many` for a speaker's clips (mean, renormalised)."""

    def __init__(self, device: str = "cpu"):
        self.device = str(device)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """The clip's d-vector; `UserError` for a silent clip or one with under `MIN_SOUND_S` of sound."""
        samples = np.asarray(wav, dtype=np.float32)
        if samples.size == 0 or not np.isfinite(samples).all() or not np.any(samples):
            raise UserError("a clip that is empty, silent or holds NaN samples has no d-vector")
        prepared = _prepare(samples, sample_rate)
        if prepared.size < MIN_SOUND_S * ENCODER_SAMPLE_RATE:
            raise UserError(
                f"a d-vector needs at least {MIN_SOUND_S:g} s of sound; this clip has "
                f"{prepared.size / ENCODER_SAMPLE_RATE * 1000:.0f} ms once its quiet ends are cut"
            )
        return _voice_encoder(self.device).embed_utterance(prepared).astype(np.float32)

    def embed_many(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        vectors = np.stack([self.embed(w, sample_rate) for w in wavs])
        mean = vectors.mean(0)
        return (mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
