"""HiFi-GAN synthesis speed on CPU: × real time for V1, V2, V3 on 10 s of 22.05 kHz audio, and parameter counts.

    python benchmarks/vocoder.py [--threads 2] [--seconds 10] [--repeats 3] [--reference PATH/TO/hifi-gan]

Prints one JSON object. Each preset's generator is built with random weights (speed does not depend on
them), weight norm is folded in and it runs through `cinematic.generation.vocode.Vocoder` (its fast
`InferenceGenerator`, inference mode), one pass over the whole mel; the figure is the median of
`--repeats` timed runs after one warm-up. The paper (Kong et al. 2020, Table 1) reports 1.43× (V1),
9.74× (V2), 13.44× (V3) real time on an Intel i7 CPU.

`--reference DIR` also times the authors' implementation (a checkout of jik876/hifi-gan: its
`models.Generator`, under `no_grad` as in its inference.py) on the same machine with the *same
weights* (copied over), reports the largest output difference and our speed-up over it. The two are
timed interleaved (ours, theirs, ours, theirs, ...) so load from other processes hits both alike.

Pin it for quiet figures, e.g. `taskset -c 1 python benchmarks/vocoder.py --threads 1 --reference DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch

from cinematic.configs.model_config import MelConfig, VocoderConfig
from cinematic.generation.vocode import Vocoder, hifigan_config
from cinematic.models.hifigan import PRESETS, Generator, parameter_count


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over `repeats` interleaved rounds, after one warm-up each
    (allocator, oneDNN primitive caches); interleaving makes drift on a shared machine hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def reference_generator(ref_dir: str, preset: str, ours: Generator) -> torch.nn.Module:
    """The authors' Generator for `preset`, loaded with our weights (weight norm removed on both sides)."""
    sys.path.insert(0, ref_dir)
    import models  # jik876/hifi-gan

    h = SimpleNamespace(**PRESETS[preset])
    ref = models.Generator(h)
    with contextlib.redirect_stdout(sys.stderr):  # it prints "Removing weight norm...": keep stdout JSON
        ref.remove_weight_norm()
    num_kernels = len(h.resblock_kernel_sizes)
    state = {}
    for key, value in ours.state_dict().items():
        if key.startswith("mrfs."):  # mrfs.{i}.blocks.{j}.rest -> resblocks.{i*K+j}.rest
            _, i, _, j, rest = key.split(".", 4)
            key = f"resblocks.{int(i) * num_kernels + int(j)}.{rest}"
        state[key] = value
    ref.load_state_dict(state)
    return ref.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=["v1", "v2", "v3"])
    parser.add_argument("--reference", help="path to a jik876/hifi-gan checkout, for a side-by-side run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mel_cfg = MelConfig()
    frames = round(args.seconds * mel_cfg.sample_rate / mel_cfg.hop_length)
    audio_seconds = frames * mel_cfg.hop_length / mel_cfg.sample_rate
    torch.manual_seed(0)
    mel = torch.randn(1, mel_cfg.n_mels, frames) - 4.0

    results = {}
    for preset in args.presets:
        generator = Generator(hifigan_config(VocoderConfig(preset=preset), mel_cfg))
        params = parameter_count(generator)
        vocoder = Vocoder(generator, mel_cfg)
        fns = {"ours": lambda v=vocoder: v.vocode(mel)}
        if args.reference:
            ref = reference_generator(args.reference, preset, vocoder.generator)

            def run_reference(r=ref):
                with torch.no_grad():  # the authors' inference.py runs under no_grad
                    return r(mel)

            fns["reference"] = run_reference
        measured = timed(fns, args.repeats)
        seconds = measured["ours"]
        entry = {
            "parameters": params,
            "seconds": round(seconds, 3),
            "x_real_time": round(audio_seconds / seconds, 2),
        }
        if args.reference:
            ref_seconds = measured["reference"]
            diff = (run_reference()[0, 0] - torch.from_numpy(vocoder.vocode(mel))).abs().max().item()
            entry.update(
                reference_seconds=round(ref_seconds, 3),
                reference_x_real_time=round(audio_seconds / ref_seconds, 2),
                speedup_vs_reference=round(ref_seconds / seconds, 2),
                max_abs_difference=diff,
            )
        results[preset] = entry
    print(
        json.dumps(
            {
                "benchmark": "hifigan_cpu_synthesis",
                "audio_seconds": round(audio_seconds, 3),
                "sample_rate": mel_cfg.sample_rate,
                "threads": args.threads,
                "torch": torch.__version__,
                "repeats": args.repeats,
                "presets": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
