"""Augmentation and feature-extraction throughput (issue: 1000 variations of a 10-s stereo clip).

    .venv/bin/python benchmarks/augmentation.py [--variations 1000] [--seconds 10] [--workers 2]

Prints one JSON object:
- augmentation: the full chain on every variation (tempo+pitch, EQ, compression, reverb, width, noise,
  loudness matching, limiter), each written to disk as 16-bit WAV by `VariationGenerator.export`;
  `wall_s` (start to manifest written, worker start-up included) and `variations_per_s` (the marginal
  rate between the first and the last finished variation, start-up excluded);
- features: log-mel (torch), Praat pitch and frame energy of speech-rate audio (22.05 kHz), and the
  music mel (44.1 kHz), in seconds of audio per second on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def test_clip(seconds: float, sample_rate: int = 44100) -> np.ndarray:
    """A stereo chord with a rhythm and a little noise: a stand-in for a 10-s music clip."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((220, 277.2, 329.6, 440)))
    beat = 0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0)
    left = chord * beat + 0.05 * rng.standard_normal(len(t))
    right = np.roll(chord, 300) * beat + 0.05 * rng.standard_normal(len(t))
    audio = np.stack([left, right])
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def bench_augmentation(variations: int, seconds: float, workers: int) -> dict:
    from cinematic.data.augmentation import TRANSFORMS, VariationGenerator, create_augmentation_config

    config = create_augmentation_config(
        variation_count=variations, probabilities=dict.fromkeys(TRANSFORMS, 1.0)
    )
    generator = VariationGenerator(config, sample_rate=44100)
    clip = test_clip(seconds)
    done: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        generator.export(
            clip, out, workers=workers, progress=False, on_written=lambda i: done.append(time.perf_counter())
        )
        wall = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    marginal = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 else float("nan")
    return {
        "variations": variations,
        "clip_seconds": seconds,
        "channels": 2,
        "sample_rate": 44100,
        "workers": workers,
        "wall_s": round(wall, 2),
        "variations_per_s": round(marginal, 3),
        "projected_1000_s": round(1000 / marginal, 1),
        "disk_mb": round(size / 2**20, 1),
        "stretch_quality": config.stretch_quality,
    }


def bench_features(seconds: float) -> dict:
    import torch

    from cinematic.configs.model_config import MelConfig, MusicModelConfig
    from cinematic.data.audio import frame_energy, mel_spectrogram, pitch_praat

    torch.set_num_threads(1)
    voice_cfg = MelConfig()
    speech = test_clip(seconds, voice_cfg.sample_rate)[0]
    mel_spectrogram(speech[:4096], voice_cfg)  # build the filterbank once (start-up)
    start = time.perf_counter()
    mel = mel_spectrogram(speech, voice_cfg)
    pitch_praat(speech, voice_cfg.sample_rate, voice_cfg.hop_length, n_frames=mel.shape[-1])
    frame_energy(speech, voice_cfg)
    voice_rate = seconds / (time.perf_counter() - start)
    music_cfg = MusicModelConfig().audio
    music = test_clip(seconds, music_cfg.sample_rate)[0]
    mel_spectrogram(music[:8192], music_cfg)
    start = time.perf_counter()
    mel_spectrogram(music, music_cfg)
    music_rate = seconds / (time.perf_counter() - start)
    return {
        "audio_seconds": seconds,
        "voice_mel_pitch_energy_audio_s_per_s": round(voice_rate, 1),
        "music_mel_audio_s_per_s": round(music_rate, 1),
        "threads": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variations", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--feature_seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "augmentation": bench_augmentation(args.variations, args.seconds, args.workers),
        "features": bench_features(args.feature_seconds),
    }
    result["machine"]["load_average_after_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
