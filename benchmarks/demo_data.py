"""Demo data set generation and synthesizer speed.

    .venv/bin/python benchmarks/demo_data.py [--repeats 3]

Prints one JSON object:
- demo: `write_demo_data` wall time (best of --repeats, into fresh folders), and the CPU seconds of
  this process and of its espeak-ng children;
- synth: `render_score` on the twelve demo pieces at 44.1 kHz stereo, as seconds of audio rendered per
  second of one core (real-time factor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from cinematic.data.demo import music_pieces, write_demo_data
    from cinematic.data.synth import render_score

    walls = []
    cpu_start = time.process_time()
    children_start = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_demo_data(Path(tmp) / "data", seed=0, progress=False)
            walls.append(time.perf_counter() - start)
    demo_cpu = time.process_time() - cpu_start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    espeak_cpu = (children.ru_utime + children.ru_stime) - (children_start.ru_utime + children_start.ru_stime)

    pieces = music_pieces(0)
    render_score(pieces[0].score)  # warm the wavetable cache
    start = time.process_time()
    audio_seconds = sum(render_score(p.score).shape[1] / 44100 for p in pieces)
    synth_cpu = time.process_time() - start

    print(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load": os.getloadavg()[0],
                },
                "demo": {
                    "wall_s_best": round(min(walls), 2),
                    "wall_s_all": [round(w, 2) for w in walls],
                    "cpu_s_per_run": round(demo_cpu / args.repeats, 2),
                    "espeak_cpu_s_per_run": round(espeak_cpu / args.repeats, 2),
                },
                "synth": {
                    "pieces": len(pieces),
                    "audio_s": round(audio_seconds, 1),
                    "cpu_s": round(synth_cpu, 2),
                    "realtime_factor": round(audio_seconds / synth_cpu, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
