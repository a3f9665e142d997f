"""The song pipeline's speed: each stage of `cinematic generate song` for a ~30-s song, the whole command,
and the singing model's synthesis speed (× real time) with the HiFi-GAN V2 vocoder.

    .venv/bin/python benchmarks/song.py [--runs ./work_dir/quickstart/runs] [--duration 30] [--threads 2]
    .venv/bin/python benchmarks/song.py --music M.pth --lyrics L.pth --singer S.pth [--vocoder V.pth]

Checkpoints: the given ones, else the quickstart's (`<runs>/{music,lyrics,singing}/checkpoints/best.pth`).
Prints one JSON object:
- stages: seconds of lyrics, melody, vocals, accompaniment and mix (SongGenerator.generate's own timings),
  plus load (reading the three checkpoints) and save (writing the six files), in one process;
- command_s: the whole `cinematic generate song ... --duration D` as a user runs it (a fresh process:
  imports included), and the length of the song it wrote;
- synthesis: the singing model singing the song's melody, as audio seconds per wall second, with a HiFi-GAN
  generator of preset V2 at the singing model's mel settings (weights untrained: speed does not depend on
  them) and with the harmonic renderer; the goal is ≥ 10× with V2, as for speech.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _checkpoint(runs: Path, name: str, given: str | None) -> str:
    if given:
        return given
    for candidate in ("best.pth", "last.pth"):
        path = runs / name / "checkpoints" / candidate
        if path.is_file():
            return str(path)
    sys.exit(
        f"no {name} checkpoint under {runs}: run `make quickstart` or pass --{name.replace('singing', 'singer')}"
    )


def bench_synthesis(singer: str, notes, language: str, repeats: int) -> dict:
    from cinematic.generation.singing import SingingSynthesizer
    from cinematic.generation.vocode import Vocoder, hifigan_config
    from cinematic.models.hifigan import Generator
    from cinematic.registry import load_config

    synth = SingingSynthesizer.from_checkpoint(singer, vocoder="harmonic")
    vocoder_cfg = load_config("base").vocoder.model_copy(
        update={"preset": "v2", "upsample_initial_channel": None}
    )
    torch.manual_seed(0)
    v2 = Vocoder(Generator(hifigan_config(vocoder_cfg, synth.mel_config)), synth.mel_config)
    results = {}
    for name, vocoder in (("hifigan_v2", v2), ("harmonic", "harmonic")):
        synth = SingingSynthesizer.from_checkpoint(singer, vocoder=vocoder)
        audio = synth.sing(notes, language, seed=0)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            audio = synth.sing(notes, language, seed=0)
        elapsed = (time.perf_counter() - start) / repeats
        seconds = len(audio.wav) / audio.sample_rate
        results[name] = {"audio_s": seconds, "wall_s": elapsed, "x_real_time": seconds / elapsed}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="./work_dir/quickstart/runs")
    parser.add_argument("--music")
    parser.add_argument("--lyrics")
    parser.add_argument("--singer")
    parser.add_argument("--vocoder", default="harmonic", help="vocoder of the song (default: harmonic)")
    parser.add_argument("--language", default="en")
    parser.add_argument("--emotion", default="sad")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    music = _checkpoint(runs, "music", args.music)
    lyrics = _checkpoint(runs, "lyrics", args.lyrics)
    singer = _checkpoint(runs, "singing", args.singer)
    from cinematic.generation.melody import melody_notes
    from cinematic.generation.song import SongGenerator

    load_before = _loadavg()
    start = time.perf_counter()
    songs = SongGenerator.from_checkpoints(music=music, lyrics=lyrics, singer=singer, vocoder=args.vocoder)
    load_s = time.perf_counter() - start
    song = songs.generate(
        language=args.language, emotion=args.emotion, duration=args.duration, seed=0, progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        song.save(tmp)
        save_s = time.perf_counter() - start

        command = [
            sys.executable, "-m", "cinematic", "generate", "song", "--music", music, "--lyrics", lyrics,
            "--singer", singer, "--vocoder", args.vocoder, "--language", args.language,
            "--emotion", args.emotion, "--duration", str(args.duration), "--out", str(Path(tmp) / "cli"),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        command_s = time.perf_counter() - start
        cli_song = json.loads((Path(tmp) / "cli" / "song.json").read_text())

    report = {
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min_before": load_before,
        "checkpoints": {"music": music, "lyrics": lyrics, "singer": singer, "vocoder": args.vocoder},
        "song": {
            "duration_s": round(song.duration, 2),
            "lines": len(song.lines),
            "syllables": sum(len(s.line.syllables) for s in song.lines),
            "key": song.key.name,
            "tempo": song.tempo,
        },
        "stages": {"load": load_s, **song.timings, "save": save_s},
        "total_in_process_s": load_s + sum(song.timings.values()) + save_s,
        "command_s": command_s,
        "command_song_duration_s": cli_song["duration_seconds"],
        "synthesis": bench_synthesis(singer, melody_notes(song.lines), args.language, args.repeats),
        "load_average_1min_after": _loadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
