"""`cinematic quickstart`: demo data, then a tiny run of every model with a sample from each.

Each model family may add one stage (`ModelFamily.quickstart`): a function
`quickstart(qs: Quickstart) -> list[Path]` in its task module that trains a tiny model on the demo data
(printing its validation metric before and after training through `qs.report`) and writes its samples
into `qs.samples_dir`. Stages run in `quickstart_order` (the speech vocoder before the voice model). After them, the song stage
(`song_stage`) writes `samples/song/` from the runs' own music, lyrics and singing checkpoints.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from cinematic import registry
from cinematic.configs import Config
from cinematic.errors import UserError
from cinematic.training.family import ModelFamily

MARKER = ".cinematic-quickstart"


@dataclass
class Quickstart:
    """What a stage needs: where the demo data is, where runs and samples go, the tiny config."""

    root: Path
    data_root: Path
    samples_dir: Path
    config: Config
    results: dict[str, dict[str, float]] = field(default_factory=dict)

    def fresh_config(self) -> Config:
        """A private copy of the tiny config for one stage to modify."""
        return self.config.model_copy(deep=True)

    def report(self, stage: str, metric: str, before: float, after: float) -> None:
        """Print a stage's validation metric before and after training, so a user sees that it learned."""
        self.results[stage] = {"metric": metric, "before": before, "after": after}  # type: ignore[dict-item]
        arrow = "↓" if after < before else "↑"
        print(f"  [{stage}] {metric}: {before:.4f} → {after:.4f} ({arrow})", flush=True)


def _prepare_root(root: Path) -> None:
    if root.exists():
        if not (root / MARKER).exists():
            raise UserError(f"{root} exists and was not made by the quickstart; choose another --work_dir")
        shutil.rmtree(root)  # a previous quickstart's demo runs: safe to replace
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `cinematic quickstart`; deleted and rebuilt by the next one\n")


def stages() -> list[ModelFamily]:
    """The families with a quickstart stage, in the order they run."""
    with_stage = [f for f in registry.families().values() if f.quickstart is not None]
    return sorted(with_stage, key=lambda family: family.quickstart_order)


SONG_SECONDS = 30.0
"""Length of the quickstart's song (the lines of the generated lyrics that fit)."""


def _run_checkpoint(runs: Path, name: str) -> Path | None:
    folder = runs / name / "checkpoints"
    for candidate in ("best.pth", "last.pth"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def song_stage(qs: Quickstart) -> list[Path]:
    """`samples/song/`: one song from the quickstart's music, lyrics and singing checkpoints (a language both
    the lyrics and the singing model know, an emotion the music model knows), sung with the harmonic
    renderer: the quickstart's briefly trained HiFi-GAN does not yet keep singing in tune."""
    from cinematic.generation.song import SongGenerator

    runs = Path(qs.config.training.work_dir)
    checkpoints = {name: _run_checkpoint(runs, name) for name in ("music", "lyrics", "singing")}
    missing = [name for name, path in checkpoints.items() if path is None]
    if missing:
        print(f"  skipped: no {', '.join(missing)} checkpoint under {runs}", flush=True)
        return []
    songs = SongGenerator.from_checkpoints(
        music=checkpoints["music"],
        lyrics=checkpoints["lyrics"],
        singer=checkpoints["singing"],
        vocoder="harmonic",
    )
    languages = [lang for lang in songs.singer.languages if lang in songs.lyrics.labels.get("language", [])]
    emotions = songs.music.known_labels.get("emotion") or [None]
    lyric_emotions = set(songs.lyrics.labels.get("emotion", []))
    emotion = next((e for e in emotions if e in lyric_emotions), emotions[0])
    if not languages:
        print("  skipped: the lyrics and the singing model share no language", flush=True)
        return []
    song = songs.generate(language=languages[0], emotion=emotion, duration=SONG_SECONDS, seed=0)
    written = song.save(Path(qs.samples_dir) / "song")
    print(
        f"  {song.duration:.1f} s in {song.key.name} at {song.tempo:g} bpm, {len(song.lines)} lines "
        f"({languages[0]}, {emotion}); {', '.join(f'{k} {v:.1f} s' for k, v in song.timings.items())}",
        flush=True,
    )
    return written


def quickstart_command(args: argparse.Namespace) -> int:
    from cinematic.data.demo import write_demo_data
    from cinematic.training.distributed import configure_logging

    configure_logging()
    root = Path(args.work_dir) / "quickstart"
    _prepare_root(root)
    config = registry.load_config("tiny")
    config.training.work_dir = str(root / "runs")
    qs = Quickstart(root=root, data_root=root / "data", samples_dir=root / "samples", config=config)
    qs.samples_dir.mkdir(parents=True)

    start = time.monotonic()
    print(f"== demo data → {qs.data_root}", flush=True)
    write_demo_data(qs.data_root, seed=0)
    written: list[Path] = []
    for family in stages():
        print(f"== {family.quickstart_title or family.name}", flush=True)
        written.extend(family.quickstart(qs))
    print("== song: lyrics → melody → sung vocals → accompaniment → mix", flush=True)
    written.extend(song_stage(qs))
    from cinematic.export import export_runs

    print(f"== exported models (each generates alone) → {qs.samples_dir}", flush=True)
    written.extend(export_runs(root / "runs", qs.samples_dir))

    minutes = (time.monotonic() - start) / 60
    print(f"\nquickstart finished in {minutes:.1f} min")
    if written:
        print("samples:")
        for path in written:
            print(f"  {path}")
    print(f"TensorBoard: tensorboard --logdir {root / 'runs' / 'logs' / 'tensorboard'}")
    return 0
