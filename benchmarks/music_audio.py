"""Music audio route throughput on this CPU (issue 10 benchmark), printed as JSON.

    .venv/bin/python benchmarks/music_audio.py            # 10 s of music generated (the goal's case)
    .venv/bin/python benchmarks/music_audio.py --quick    # 3 s generated, fewer training steps

Everything runs at the default music front end (`music_model.audio`: 44.1 kHz, hop 1024, 128 mels,
43.1 frames/s; `--hop 512` measures the finer front end) with the default tokenizer (K = 4 codebooks
× 256 entries), on synthetic harmonic audio (no data set needed), with 2 threads:

- tokenizer: fit time on 60 s of audio; encode speed (mel + residual quantization) as × real time;
- training: tokens/s (K tokens per delayed step; forward + backward + AdamW) of the K-stream Music
  Transformer, 6 layers × 8 heads × d 512 × ff 1024, batch 2 × 512 steps (the trainer's AdamW);
- generation: seconds of music per second of wall time for `duration` seconds, sampling on the KV
  cache with classifier-free guidance (two rows), RVQ decoding and HiFi-GAN V2 vocoding (random
  weights: speed does not depend on them). Goal: 10 s of music in under 10 s (≥ 1.0 × real time).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def synthetic_music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Notes of a harmonic tone with decays, so mel frames vary like music."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr), dtype=np.float32)
    note = int(0.25 * sr)
    for start in range(0, len(out) - note, note):
        t = np.arange(note) / sr
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * np.exp(-4 * t)
        out[start : start + note] += 0.2 * rng.uniform(0.3, 1.0) * tone
    return out + 1e-3 * rng.standard_normal(len(out)).astype(np.float32)


def bench_tokenizer(mel_cfg, k: int, n: int) -> tuple[dict, object]:
    from cinematic.data.audio import mel_spectrogram
    from cinematic.data.tokenizers.mel_rvq import MelRVQ

    wav = synthetic_music(60.0, mel_cfg.sample_rate)
    mel = mel_spectrogram(torch.from_numpy(wav), mel_cfg)
    start = time.perf_counter()
    rvq = MelRVQ.fit(mel.T, mel_cfg, k, n, progress=False)
    fit_s = time.perf_counter() - start
    clip = synthetic_music(20.0, mel_cfg.sample_rate, seed=1)
    rvq.encode(clip[: mel_cfg.sample_rate])  # warm-up
    start = time.perf_counter()
    codes = rvq.encode(clip)
    encode_s = time.perf_counter() - start
    report = rvq.reconstruction_report([mel_spectrogram(torch.from_numpy(clip), mel_cfg)])
    return {
        "fit_seconds_60s_audio": round(fit_s, 2),
        "encode_x_realtime": round(20.0 / encode_s, 1),
        "frames": int(codes.shape[1]),
        "reconstruction": [{k2: round(v, 3) for k2, v in r.items()} for r in report],
    }, rvq


def make_model(k: int, n: int):
    from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
    from cinematic.tasks.music_audio import StreamVocab

    cfg = MusicTransformerConfig(
        vocab_size=StreamVocab(n).size,
        num_streams=k,
        num_layers=6,
        num_heads=8,
        embed_dim=512,
        ff_dim=1024,
        dropout=0.1,
        max_relative_position=1024,
        condition_sizes=(7, 9, 12),
    )
    return MusicTransformer(cfg)


def bench_training(k: int, n: int, steps: int) -> dict:
    from cinematic.configs import TrainingConfig
    from cinematic.tasks.music_audio import AudioMusicTask
    from cinematic.training.optimizers import build_optimizer

    model = make_model(k, n).train()
    optimizer = build_optimizer([model], TrainingConfig(learning_rate=1e-4))  # as the trainer builds it
    task = AudioMusicTask()
    batch = {
        "inputs": torch.randint(0, n, (2, k, 512)),
        "targets": torch.randint(0, n, (2, k, 512)),
        "conditions": torch.randint(0, 7, (2, 3)),
    }

    def step() -> int:
        out = task.training_step({"music": model}, batch, "main", {})
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.num_items

    step()  # warm-up
    start = time.perf_counter()
    tokens = sum(step() for _ in range(steps))
    elapsed = time.perf_counter() - start
    return {"config": "6 layers x 8 heads x d512 x ff1024, batch 2 x 512 steps", "tokens_per_s": round(tokens / elapsed),
            "steps_per_s": round(steps / elapsed, 3)}  # fmt: skip


def bench_generation(rvq, k: int, n: int, duration: float, mel_cfg) -> dict:
    from cinematic.configs import Config
    from cinematic.generation.music_audio import AudioMusicGenerator
    from cinematic.generation.vocode import Vocoder, hifigan_config
    from cinematic.models.hifigan import Generator

    model = make_model(k, n).eval()
    vcfg = Config().vocoder.model_copy(update={"preset": "v2"})
    vocoder = Vocoder(Generator(hifigan_config(vcfg, mel_cfg)), mel_cfg)
    labels = {
        "emotion": ["<none>", *"abcdef"],
        "genre": ["<none>", *"abcdefgh"],
        "scene": ["<none>", *"abcdefghijk"],
    }
    music = AudioMusicGenerator(model, rvq, labels, vocoder=vocoder)
    music.generate_codes(emotion="a", duration=0.2, guidance=3.0)  # warm-up
    start = time.perf_counter()
    codes = music.generate_codes(emotion="a", duration=duration, guidance=3.0, top_k=50, seed=0)
    sampled = time.perf_counter()
    mel = rvq.decode(codes)
    wav = music.vocode(mel)
    done = time.perf_counter()
    seconds = len(wav) / mel_cfg.sample_rate
    return {
        "duration_s": round(seconds, 2),
        "sampling_s": round(sampled - start, 2),
        "decode_and_vocode_s": round(done - sampled, 2),
        "total_s": round(done - start, 2),
        "music_seconds_per_second": round(seconds / (done - start), 3),
        "steps_per_s": round((codes.shape[1] + k - 1) / (sampled - start), 1),
        "goal_10s_under_10s": bool(done - start < seconds) if duration >= 10 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s generated, 3 training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to generate (default 10, quick 3)"
    )
    parser.add_argument("--hop", type=int, default=None, help="mel hop (default: music_model.audio's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from cinematic.configs import Config

    cfg = Config()
    mel_cfg, k, n = cfg.music_model.audio, cfg.music_model.rvq_codebooks, cfg.music_model.rvq_codebook_size
    if args.hop:
        mel_cfg = mel_cfg.model_copy(update={"hop_length": args.hop})
    tokenizer, rvq = bench_tokenizer(mel_cfg, k, n)
    result = {
        "threads": args.threads,
        "mel": {
            "sample_rate": mel_cfg.sample_rate,
            "hop_length": mel_cfg.hop_length,
            "n_mels": mel_cfg.n_mels,
        },
        "codebooks": k,
        "codebook_size": n,
        "tokenizer": tokenizer,
        "training": bench_training(k, n, steps=3 if args.quick else 8),
        "generation": bench_generation(rvq, k, n, args.duration or (3.0 if args.quick else 10.0), mel_cfg),
        "note": "timings depend on machine load; on a shared CPU they are upper bounds",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
