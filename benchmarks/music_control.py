"""Does the symbolic Music Transformer follow its conditions on real music? (issue 16 §5)

    .venv/bin/python benchmarks/music_control.py [--out bench_work/music_control] [--pieces 300]
        [--max_minutes 12] [--samples 24] [--guidance 3]

1. Corpus (offline): the Bach chorales bundled with music21 (`music21.corpus.getComposer("bach")`,
   public domain), parsed once and written as MIDI in the seed layout, each with a `.json` label:
   `emotion` = "bright" for a chorale in a major key, "dark" for one in a minor key (music21's key
   analysis of the score) — a binary label the music expresses. The chorales carry no tempo marks, so
   each piece gets a tempo drawn from 60–160 bpm (seeded) before export; that gives the tempo and
   density controls something to learn. Exported once into `<out>/corpus` and reused.
2. Training: `cinematic`'s own trainer on that folder (symbolic route, measured attributes as
   conditions), for `--max_minutes` of wall time (or `--max_steps`).
3. Measures (from the best checkpoint), printed as one JSON object:
   - `label_following`: with and without guidance, the fraction of generated pieces whose measured
     mode matches the one the requested emotion stands for (bright → major, dark → minor);
   - `label_sensitivity`: mean per-token NLL of the openings of the validation pieces under the wrong
     emotion minus under the true one (≈ 0 for a model that ignores the label), on the first 256 tokens
     and on the first 32 and 64 (where a label decides the notes before the music reveals its key);
   - `control_accuracy`: for key, mode, tempo and density, the fraction of generated pieces whose
     measured attribute equals the requested one (requests drawn from the values seen in training).
   The wall time and the number of steps done are reported: the machine may be shared.
4. `measurement_ceiling`: the same measurement on the real pieces' own openings (first 4/6/10/20 s
   and whole): how often a real chorale's opening measures as its label's mode and as its own key.
   No generated piece can be expected to score above what the real music scores.
5. `--unseen`: label sensitivity (first 32 tokens) also on the chorales beyond `--pieces` (112 of the 412
   music21 exports), which no run trains on: more openings than the 30 held out, smaller errors.
6. `--shuffle_labels`: train on a copy of the corpus whose emotion labels are permuted among the pieces
   and measure against the true labels: what `label_sensitivity` reads for a model that cannot have
   learned the label on this corpus (the baseline "clearly above 0" is judged against, with the
   per-piece standard errors the report gives).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np


def export_corpus(out: Path, pieces: int, seed: int = 0) -> Path:
    """Write up to `pieces` Bach chorales as `<out>/NNN_<name>.mid` + `.json`; skip what is there."""
    from music21 import corpus, tempo
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    done = out / "DONE"
    if done.is_file() and int(done.read_text() or 0) >= pieces:
        return out
    paths = sorted(str(p) for p in corpus.getComposer("bach"))
    rng = np.random.default_rng(seed)
    bpms = rng.integers(60, 161, size=len(paths))
    written = 0
    for index, path in enumerate(tqdm(paths, desc="exporting chorales", unit="piece")):
        if written >= pieces:
            break
        stem = f"{index:03d}_{Path(path).stem.replace('.', '_')}"
        midi, label = out / f"{stem}.mid", out / f"{stem}.json"
        if midi.is_file() and label.is_file():
            written += 1
            continue
        try:
            score = corpus.parse(path)
            if len(score.parts) < 2:
                continue
            key = score.analyze("key")
            for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
                mark.activeSite.remove(mark)
            first = score.parts[0].getElementsByClass("Measure")
            target = first[0] if len(first) else score.parts[0]
            target.insert(0, tempo.MetronomeMark(number=int(bpms[index])))
            score.write("midi", fp=str(midi))
        except Exception as err:  # a score music21 cannot export: leave it out
            print(f"skip {path}: {err}", file=sys.stderr)
            continue
        emotion = "bright" if key.mode == "major" else "dark"
        label.write_text(json.dumps({"emotion": emotion, "source": f"music21 corpus {Path(path).name}"}))
        written += 1
    done.write_text(str(written))
    return out


def shuffled_copy(corpus_dir: Path, out: Path, seed: int = 0) -> Path:
    """The corpus with its emotion labels permuted among the pieces (seeded): a model trained on it can
    learn nothing from the label, so its `label_sensitivity` for emotion is the figure that means
    "ignored" on this corpus (the measured attributes still come from each piece's own notes)."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    labels = sorted(corpus_dir.glob("*.json"))
    emotions = [json.loads(p.read_text())["emotion"] for p in labels]
    permuted = np.random.default_rng(seed).permutation(emotions)
    for path, emotion in zip(labels, permuted, strict=True):
        shutil.copyfile(path.with_suffix(".mid"), out / f"{path.stem}.mid")
        (out / path.name).write_text(json.dumps({"emotion": str(emotion), "source": "shuffled"}))
    return out


MODEL_SETTINGS = [
    "music_model.num_layers=3",
    "music_model.num_heads=4",
    "music_model.embed_dim=128",
    "music_model.ff_dim=512",
    "music_model.dropout=0.1",
    "music_model.max_seq_len=128",
    "music_model.max_relative_position=128",
    "music_model.genre_conditioning=false",
    "music_model.scene_conditioning=false",
    "music_model.representation=midi",
    "training.batch_size=8",
    "training.learning_rate=0.003",
    "training.warmup_steps=50",
    "training.max_steps=100000",
    "training.epochs=1000",
    "training.validate_every_steps=1000000",
    "training.checkpoint_every_steps=100",
    "training.validate_at_start=false",
    "data.val_fraction=0.1",
    "data.max_val_items=30",
]
"""A 3-layer × 128 Music Transformer on 128-token crops, batch 8: small steps, so that a shared machine
still gets several hundred of them into the budget."""


def train(
    corpus_dir: Path,
    work_dir: Path,
    max_cpu_minutes: float,
    max_minutes: float,
    max_steps: int | None,
    overrides: list[str],
    threads: int = 2,
) -> dict:
    """Train through the project's trainer until the process has used `max_cpu_minutes` of CPU time
    (2 quiet cores for 15 min = 30 CPU-minutes; on a shared machine wall time says little) or
    `max_minutes` of wall time; then a SIGUSR1 makes the trainer checkpoint and stop (its preemption
    path)."""
    import os
    import signal
    import threading

    import torch

    from cinematic import registry
    from cinematic.tasks.music import MusicTask
    from cinematic.training.trainer import run_training

    run_name = time.strftime("music_%Y%m%d_%H%M%S")  # a new run folder each time (never overwritten)
    settings = [*MODEL_SETTINGS, f"training.work_dir={work_dir}", f"training.run_name={run_name}", *overrides]
    if max_steps:
        settings.append(f"training.max_steps={max_steps}")
    cfg = registry.load_config("tiny", settings)
    torch.set_num_threads(
        threads
    )  # 1 on a loaded machine: a second thread's spin-waits cost more than it gives
    start, cpu_start = time.perf_counter(), time.process_time()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(5.0):
            cpu = (time.process_time() - cpu_start) / 60
            wall = (time.perf_counter() - start) / 60
            if cpu >= max_cpu_minutes or wall >= max_minutes:
                os.kill(os.getpid(), signal.SIGUSR1)
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        run_training(MusicTask(), cfg, corpus_dir)
    except SystemExit:  # the preemption exit after its checkpoint
        pass
    finally:
        done.set()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    last = work_dir / run_name / "checkpoints" / "last.pth"
    step = int(torch.load(last, weights_only=True, map_location="cpu")["step"])
    return {
        "checkpoint": str(last),
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "steps": step,
        "threads": threads,
        "settings": settings,
    }


def measure(
    checkpoint: Path,
    corpus_dir: Path,
    samples: int,
    guidance: float,
    length: int,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float | None = None,
    *,
    fill_min_p: float,
    unseen_dir: Path | None = None,
) -> dict:
    """Label following, label sensitivity and attribute control accuracy of a checkpoint (samples drawn
    with seeds `seed`, `seed` + 1, …: another `--seed` gives a fresh set to confirm a setting on)."""
    import torch
    from tqdm.auto import tqdm

    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.data.attributes import measure_score
    from cinematic.data.corpora import discover_music_corpus
    from cinematic.generation.music import MusicGenerator
    from cinematic.generation.music_eval import SymbolicRoute, label_sensitivity, read_pieces

    torch.set_num_threads(1)
    state = read_checkpoint(checkpoint)
    music = MusicGenerator.from_checkpoint(state)
    rng = np.random.default_rng(seed)

    def generate(labels: dict, index: int, w: float, fill: bool = True) -> dict:
        score = music.generate(
            **labels, length=length, seed=seed + index, guidance=w, fill_attributes=fill,
            temperature=temperature, top_p=top_p,
            fill_min_p=fill_min_p,
        )  # fmt: skip
        return measure_score(score) if score.note_num() else {}

    out: dict = {}
    if samples > 0:  # --samples 0: sensitivity only
        # label following: emotion bright → major, dark → minor
        mode_of = {"bright": "major", "dark": "minor"}
        for name, w, fill in (
            ("without_guidance", 1.0, True),
            ("with_guidance", guidance, True),
            ("without_guidance_no_fill", 1.0, False),
            ("with_guidance_no_fill", guidance, False),
        ):
            hits = 0
            for i in tqdm(range(samples), desc=f"label following {name}"):
                emotion = ("bright", "dark")[i % 2]
                hits += generate({"emotion": emotion}, i, w, fill).get("mode") == mode_of[emotion]
            out.setdefault("label_following", {})[name] = hits / samples
        # attribute control: requests drawn from the values the training pieces had
        seen = state["task_state"].get("attribute_sets") or {}
        accuracy: dict = {}
        for attribute in ("key", "mode", "tempo", "density"):
            values = music.known_labels.get(attribute) or []
            counts = dict(seen.get("values", {}).get(attribute, {}))
            requests = [v for v in values if counts.get(v, 0) > 0] or values
            for name, w in (("without_guidance", 1.0), ("with_guidance", guidance)):
                hits = 0
                for i in tqdm(range(samples), desc=f"{attribute} control {name}"):
                    wanted = requests[int(rng.integers(len(requests)))]
                    hits += generate({attribute: wanted}, 1000 + i, w).get(attribute) == wanted
                accuracy.setdefault(attribute, {})[name] = hits / samples
        out["control_accuracy"] = accuracy
    # label sensitivity (H2's evaluate music code): openings of the validation-split pieces
    window = int((state.get("config") or {}).get("music_model", {}).get("attribute_window") or 0)
    route = SymbolicRoute(music, 256, window)  # true attributes as the checkpoint's training measured them
    items = discover_music_corpus(corpus_dir).of_kind("midi")
    val_names = set(state["task_state"].get("validation_files") or [])
    chosen = [i for i in items if i.path.name in val_names] or items[-30:]
    pieces, _ = read_pieces(route, chosen, 30, seed, "validation", progress=False)
    sensitivity = label_sensitivity(route, pieces, opening=256, progress=False)
    out["label_sensitivity"] = _rounded(sensitivity)
    out["label_sensitivity_alone"] = _rounded(label_sensitivity(route, pieces, 256, **ALONE))
    # a label decides the first notes; later the music itself tells the model its key and mode, so the
    # per-token average over 256 tokens dilutes it: the same figures on the first 32 and 64 tokens
    for opening in (32, 64):
        short = label_sensitivity(route, pieces, opening=opening, progress=False)
        out[f"label_sensitivity_first_{opening}"] = _rounded(short)
        out[f"label_sensitivity_alone_first_{opening}"] = _rounded(
            label_sensitivity(route, pieces, opening, **ALONE)
        )
    if unseen_dir is not None:  # more openings than the 30 held out: the chorales no run trained on
        trained = {p.name for p in corpus_dir.glob("*.mid")}
        unseen = [i for i in discover_music_corpus(unseen_dir).of_kind("midi") if i.path.name not in trained]
        pieces, _ = read_pieces(route, unseen, None, seed, "unseen", progress=False)
        out["unseen_pieces"] = len(pieces)
        out["label_sensitivity_unseen_first_32"] = _rounded(
            label_sensitivity(route, pieces, 32, progress=False)
        )
        out["label_sensitivity_alone_unseen_first_32"] = _rounded(
            label_sensitivity(route, pieces, 32, **ALONE)
        )
    return out


ALONE = {"names": ("emotion", "mode", "key"), "alone": True, "progress": False}
"""`label_sensitivity` of these conditions with every other one null: does the condition alone move the
model?"""


def _rounded(sensitivity: dict) -> dict:
    """{condition: {"mean", "stderr"}} from `label_sensitivity`'s detail."""
    return {
        k: {"mean": round(v["delta_nll"], 4), "stderr": round(v["stderr"], 4)} for k, v in sensitivity.items()
    }


def measurement_ceiling(corpus_dir: Path, spans=(4.0, 6.0, 10.0, 20.0, None)) -> dict:
    """How often the REAL pieces' own openings measure as their label's mode (and as the whole piece's
    key), with the same key finder the generated pieces are measured with: the ceiling of
    `label_following` and of key control for samples of that length. None: the whole piece."""
    import symusic

    from cinematic.data.attributes import estimate_key

    def key_of(notes: np.ndarray) -> str | None:
        if not len(notes):
            return None
        weights = np.maximum(notes[:, 1] - notes[:, 0], 1e-3)
        return estimate_key(np.bincount(notes[:, 2].astype(np.int64) % 12, weights=weights, minlength=12))

    pieces = []
    for midi in sorted(corpus_dir.glob("*.mid")):
        label = json.loads(midi.with_suffix(".json").read_text())["emotion"]
        score = symusic.Score(str(midi)).to("second")
        rows = [
            np.stack(
                [
                    t.notes.numpy()["time"],
                    t.notes.numpy()["time"] + t.notes.numpy()["duration"],
                    t.notes.numpy()["pitch"],
                ],
                axis=1,
            )  # fmt: skip
            for t in score.tracks
            if t.note_num()
        ]
        pieces.append(("major" if label == "bright" else "minor", np.concatenate(rows).astype(np.float64)))
    ceiling = {}
    for span in spans:
        mode_hits = key_hits = counted = 0
        for mode, notes in pieces:
            opening = notes if span is None else notes[notes[:, 0] < span]
            key = key_of(opening)
            if key is None:
                continue
            counted += 1
            mode_hits += key.endswith(mode)
            key_hits += key == key_of(notes)
        name = "whole_piece" if span is None else f"first_{span:g}_s"
        ceiling[name] = {"pieces": counted, "mode_matches_label": round(mode_hits / counted, 3),
                         "key_matches_whole_piece": round(key_hits / counted, 3)}  # fmt: skip
    return ceiling


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="work_dir/bench/music_control")
    parser.add_argument("--pieces", type=int, default=300)
    parser.add_argument(
        "--max_cpu_minutes", type=float, default=30.0, help="training budget in CPU time (2 cores × 15 min)"
    )
    parser.add_argument("--max_minutes", type=float, default=60.0, help="training wall-time cap")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--samples", type=int, default=24, help="generated pieces per measured figure")
    parser.add_argument("--length", type=int, default=512, help="tokens per generated piece")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling (default: off)")
    parser.add_argument(
        "--fill_min_p", type=float, default=None, help="completing a request (default: generation's own)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first sampling seed (a fresh set: another one)")
    parser.add_argument("--report", default="report.json", help="file name of the JSON under --out")
    parser.add_argument("--set", action="append", default=[], help="config overrides, key.path=value")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--checkpoint", help="measure this checkpoint instead of training one")
    parser.add_argument("--export_only", action="store_true")
    parser.add_argument(
        "--unseen", action="store_true",
        help="also measure label sensitivity on the chorales beyond --pieces (no run trains on them)",
    )  # fmt: skip
    parser.add_argument(
        "--shuffle_labels", action="store_true",
        help="train on the corpus with its emotion labels permuted (the 'ignores the label' baseline); "
        "measured against the true labels",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    start = time.perf_counter()
    corpus_dir = export_corpus(out / "corpus", args.pieces)
    report: dict = {
        "corpus": str(corpus_dir),
        "pieces": args.pieces,
        "export_s": round(time.perf_counter() - start, 1),
        "measurement_ceiling": measurement_ceiling(corpus_dir),
    }
    if args.export_only:
        print(json.dumps(report))
        return 0
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        report.update(
            train(
                shuffled_copy(corpus_dir, out / "corpus_shuffled") if args.shuffle_labels else corpus_dir,
                out / "work",
                args.max_cpu_minutes,
                args.max_minutes,
                args.max_steps,
                args.set,
                args.threads,
            )
        )
        checkpoint = Path(report["checkpoint"])
    started = time.perf_counter()
    from cinematic.generation.sampling import FILL_MIN_P

    fill_min_p = FILL_MIN_P if args.fill_min_p is None else args.fill_min_p
    sampling = {
        "seed": args.seed,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "fill_min_p": fill_min_p,
    }
    unseen = export_corpus(corpus_dir.resolve().parent / "corpus_all", 10_000) if args.unseen else None
    report.update(
        measure(
            checkpoint, corpus_dir, args.samples, args.guidance, args.length, **sampling, unseen_dir=unseen
        )
    )
    report["measure_wall_s"] = round(time.perf_counter() - started, 1)
    report.update(samples=args.samples, length=args.length, guidance=args.guidance, **sampling)
    report["shuffled_labels"] = args.shuffle_labels
    print(json.dumps(report, indent=1))
    (out / args.report).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
