"""`cinematic export --checkpoint CKPT [--vocoder VCKPT] --out model.cinematic`: one file that generates.

A training checkpoint holds what resuming needs (optimizer, scheduler, RNG streams, every model of a GAN)
and names its vocoder by reference; an exported model holds what generation needs and nothing else:
the inference weights (EMA when the run kept them) of the models the family's loader reads
(`ModelFamily.inference_models`), the family's config section, the task state (model settings,
tokenizer, vocabularies, label sets, statistics), and — for a family with companions
(`ModelFamily.companions`: the music audio route's and the voice model's vocoder) — the companion's
own inference checkpoint, embedded. Copied alone anywhere, it generates what the training checkpoint
generated: `cinematic generate …`, `synthesize`, `vocode` and `cinematic.load` read it like a
checkpoint (`checkpoint_io.read_checkpoint` recognises it).

The file is safetensors (tensors) + JSON (the rest, in the metadata): see docs/export.md and
`cinematic.checkpoint_io.write_export`. Before writing, the export is loaded once with its vocoder, so a
vocoder at other mel settings than the model is refused and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cinematic import registry
from cinematic.checkpoint_io import (
    describe_companion,
    find_companion,
    inference_checkpoint,
    read_checkpoint,
    write_export,
)
from cinematic.errors import UserError
from cinematic.utils import file_sha1

CHECKPOINT_NAMES = ("best.pth", "last.pth")
"""The checkpoint of a run folder `export_runs` exports: its best, else its last."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cinematic")
    except PackageNotFoundError:
        return "unknown"


def inference_model(
    checkpoint: dict[str, Any],
    source: str | Path | None = None,
    vocoder: str | Path | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The inference checkpoint of `checkpoint` (read from `source`) with its companions embedded:
    `vocoder` (a checkpoint path) replaces the recorded one; else the recorded one is found as
    generation finds it. `sources` collects {task_state key: where each companion came from}."""
    where = str(source or "checkpoint")
    family = registry.family_of_checkpoint(checkpoint, where)
    if vocoder is not None and not family.companions:
        raise UserError(f"--vocoder: {where} is a {family.name} model, which generates without a vocoder")
    try:
        model = inference_checkpoint(
            checkpoint, family.inference_models, [family.section] if family.section else []
        )
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    model["task_state"] = dict(model["task_state"])
    for i, key in enumerate(family.companions):
        if i == 0 and vocoder is not None:
            if not Path(vocoder).is_file():
                raise UserError(f"--vocoder: vocoder checkpoint not found: {vocoder}")
            found: Path | dict[str, Any] = Path(vocoder)
        else:
            found = find_companion(
                checkpoint.get("task_state", {}).get(key),
                source,
                "vocoder",
                hint="pass --vocoder VCKPT to export it with one",
            )
        companion_source = str(found) if isinstance(found, Path) else describe_companion(found)
        companion = read_checkpoint(found) if isinstance(found, Path) else found
        model["task_state"][key] = inference_model(companion, companion_source)
        if sources is not None:
            sources[key] = companion_source
    return model


def export_model(checkpoint: str | Path, out: str | Path, vocoder: str | Path | None = None) -> Path:
    """Write the exported model of training checkpoint `checkpoint` (or of another export) to `out`.

    The export is loaded once with its vocoder before it is written (a vocoder at other mel settings
    than the model is a UserError naming both files, and nothing is written)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise UserError(f"--out {out} is the checkpoint being exported; choose another file")
    source = read_checkpoint(checkpoint)
    sources: dict[str, str] = {}
    model = inference_model(source, checkpoint, vocoder, sources)
    family = registry.family_of_checkpoint(model, str(checkpoint))
    with_vocoder = f" with {', '.join(sources.values())}" if sources else ""
    try:  # the export generates: the model and its vocoder load, at the same mel settings
        loaded = registry.load(model, device="cpu", source=str(out), checkpoint_path=str(out))
        if family.companions:
            _ = getattr(loaded, "vocoder", None)
    except UserError as err:
        raise UserError(f"cannot export {checkpoint}{with_vocoder}: {err}") from None
    ema = source.get("ema") or {}
    info = {
        "family": family.name,
        "source": checkpoint.name,
        "source_sha1": file_sha1(checkpoint),
        "weights": {name: "ema" if name in ema else "model" for name in model["model"]},
        "companions": {key: Path(path).name for key, path in sources.items()},
        "cinematic_version": _version(),
    }
    return write_export(model, out, info)


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def export_command(args: argparse.Namespace) -> int:
    """`cinematic export --checkpoint CKPT [--vocoder VCKPT] --out model.cinematic`."""
    out = export_model(args.checkpoint, args.out, args.vocoder)
    checkpoint = Path(args.checkpoint)
    print(
        f"wrote {out} ({_megabytes(out)}; the checkpoint is {_megabytes(checkpoint)}): it generates alone, "
        f"e.g. `cinematic.load({str(out)!r})`"
    )
    return 0


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of a run folder worth sharing: its best, else its last (None: it has none)."""
    return next(
        (run_dir / "checkpoints" / n for n in CHECKPOINT_NAMES if (run_dir / "checkpoints" / n).is_file()),
        None,
    )


def export_runs(runs_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Export the best (else last) checkpoint of every run folder of a work folder to
    `<out_dir>/<run>.cinematic` (the quickstart's step after its stages). A run that cannot be exported
    (e.g. a voice model without a vocoder) is reported and skipped."""
    runs_dir = Path(runs_dir)
    runs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    written: list[Path] = []
    for run_dir in runs:
        checkpoint = run_checkpoint(run_dir)
        if checkpoint is None:
            continue
        try:
            out = export_model(checkpoint, Path(out_dir) / f"{run_dir.name}.cinematic")
        except UserError as err:
            print(f"  {run_dir.name}: not exported ({err})", flush=True)
            continue
        print(f"  {run_dir.name}: {out} ({_megabytes(out)}; checkpoint {_megabytes(checkpoint)})", flush=True)
        written.append(out)
    return written
