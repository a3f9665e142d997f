"""FastSpeech 2 throughput: training steps/s and synthesis speed (× real time) with HiFi-GAN V1 and V2.

    .venv/bin/python benchmarks/voice.py [--config base] [--batch 16] [--phonemes 100] [--frames 600]
                                         [--steps 5] [--threads 2]

Prints one JSON object:
- train: optimizer steps/s of the full training step (encoder, aligner + MAS, variance adaptor, decoder,
  postnet, all losses, backward, Adam) at batch `--batch` with `--phonemes` symbols and `--frames` mel
  frames per item (the issue's reference point: 16 × ~100 phonemes × ~600 frames);
- synthesis: one sentence (~`--phonemes` symbols) through the acoustic model and the vocoder, as audio
  seconds per wall second, for generator presets v1 and v2 (weights untrained: speed does not depend on them).

Random inputs of the right shapes stand in for data, so the numbers measure compute only. `--decoder_layers 6` matches ming024/FastSpeech2's default model. The default
`--config base` is the seed's sizes (4 + 4 FFT blocks, 256 wide), the FastSpeech 2 paper's configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def bench_training(cfg, batch: int, phonemes: int, frames: int, steps: int) -> dict:
    from cinematic.generation.speech import fastspeech_config
    from cinematic.models.fastspeech import FastSpeech2

    vcfg = cfg.voice_model
    torch.manual_seed(0)
    model = FastSpeech2(fastspeech_config(vcfg, n_symbols=100, n_languages=4)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    tokens = torch.randint(2, 100, (batch, phonemes))
    text_lengths = torch.full((batch,), phonemes)
    text_lengths[1::2] = phonemes - phonemes // 10  # a little padding, as in real batches
    mels = torch.randn(batch, frames, vcfg.audio.n_mels) - 5
    mel_lengths = torch.full((batch,), frames)
    mel_lengths[1::2] = frames - frames // 10
    inputs = dict(
        tokens=tokens,
        text_lengths=text_lengths,
        mels=mels,
        mel_lengths=mel_lengths,
        pitch=torch.randn(batch, frames),
        energy=torch.randn(batch, frames),
        speakers=torch.randint(0, 4, (batch,)),
        languages=torch.randint(0, 4, (batch,)),
        dvectors=torch.nn.functional.normalize(torch.randn(batch, 256), dim=-1),
    )

    def step() -> None:
        out = model(**inputs)
        loss = model.losses(out, mels, text_lengths, mel_lengths, binarization_weight=1.0)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (numba compile, allocator)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "phonemes": phonemes,
        "frames": frames,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "frames_per_s": steps * batch * frames / elapsed,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def bench_synthesis(cfg, phonemes: int, repeats: int) -> dict:
    from cinematic.generation.speech import fastspeech_config
    from cinematic.generation.vocode import Vocoder, hifigan_config
    from cinematic.models.fastspeech import FastSpeech2
    from cinematic.models.hifigan import Generator

    vcfg = cfg.voice_model
    torch.manual_seed(0)
    model = FastSpeech2(fastspeech_config(vcfg, n_symbols=100, n_languages=4)).eval()
    tokens = torch.randint(2, 100, (1, phonemes))
    args = (
        tokens,
        torch.tensor([1]),
        torch.tensor([0]),
        torch.nn.functional.normalize(torch.randn(1, 256), dim=-1),
    )
    durations = torch.full((1, phonemes), 6)  # ≈ 14 phonemes/s, a normal speaking rate
    results = {}
    for preset in ("v1", "v2"):
        vocoder_cfg = cfg.vocoder.model_copy(update={"preset": preset, "upsample_initial_channel": None})
        vocoder = Vocoder(Generator(hifigan_config(vocoder_cfg, vcfg.audio)), vcfg.audio)
        with torch.inference_mode():
            mel = model.infer(*args, durations=durations)["mel"][0].T
            vocoder.vocode(mel)  # warm-up
            start = time.perf_counter()
            for _ in range(repeats):
                mel = model.infer(*args, durations=durations)["mel"][0].T
                wav = vocoder.vocode(mel)
            elapsed = (time.perf_counter() - start) / repeats
            acoustic_start = time.perf_counter()
            model.infer(*args, durations=durations)
            acoustic = time.perf_counter() - acoustic_start
        seconds = len(wav) / vcfg.audio.sample_rate
        results[preset] = {
            "audio_s": seconds,
            "wall_s": elapsed,
            "x_real_time": seconds / elapsed,
            "acoustic_model_s": acoustic,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phonemes", type=int, default=100)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--decoder_layers",
        type=int,
        default=None,
        help="6 = ming024/FastSpeech2's default LJSpeech model (4 encoder + 6 decoder blocks)",
    )
    args = parser.parse_args()

    from cinematic.configs import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    if args.decoder_layers is not None:
        cfg.voice_model.decoder_num_layers = args.decoder_layers
    load_before = _loadavg()
    report = {
        "config": args.config,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min_before": load_before,
        "train": bench_training(cfg, args.batch, args.phonemes, args.frames, args.steps),
        "synthesis": bench_synthesis(cfg, args.phonemes, args.repeats),
        "load_average_1min_after": _loadavg(),
        "decoder_layers": cfg.voice_model.decoder_num_layers,
        "reference": (
            "ming024/FastSpeech2 side by side: pending (its code cannot be installed here). Its default "
            "LJSpeech model is 4 encoder + 6 decoder FFT blocks, 256 wide, conv 1024 × (9, 1), postnet 5 × 512, "
            "batch 16, durations from MFA (no aligner): --decoder_layers 6 runs that architecture here, with "
            "our aligner on top, so it bounds our cost at its config from above."
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
