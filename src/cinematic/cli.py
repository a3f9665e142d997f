"""The `cinematic` command (DESIGN §1). `train` choices and the generate/synthesize/vocode/evaluate
subcommands come from the registry of model families (`cinematic.registry`); each subcommand names the
function that runs it ("module:function"), imported only when used.

Errors a user can cause raise `UserError`: printed as one paragraph, exit status 2 (`--debug` shows the
traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from cinematic import registry
from cinematic.errors import UserError
from cinematic.training.family import CommandGroups, add_debug_flag


def _common(parser: argparse.ArgumentParser) -> None:
    add_debug_flag(parser)  # no default of its own: it would overwrite `cinematic --debug CMD`


def _config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--config", default=default, help="YAML config file or preset name (tiny, base)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (repeatable)",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model", description="Train one model family.")
    p.add_argument("task", choices=registry.trainable())
    add_train_arguments(p)
    p.set_defaults(handler="cinematic.launch:train_command")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `cinematic train TASK` and the seed scripts (train_music.py, ...)."""
    _config_args(p, default=None)
    p.add_argument("--data_dir", "--data-dir", help="data folder (default ./data/<task>)")
    p.add_argument("--work_dir", "--work-dir", help="output root (default training.work_dir, ./work_dir)")
    p.add_argument(
        "--resume", metavar="PATH|auto", help="continue from a checkpoint, or the newest valid one"
    )
    p.add_argument(
        "--stage",
        choices=["acoustic", "vocoder", "all"],
        default="all",
        help="voice: train the acoustic model, the vocoder, or both in order",
    )
    p.add_argument(
        "--vocoder", metavar="VCKPT", help="music audio route: use this vocoder instead of training one"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable training file (default: skip it and list it in "
        "<run>/skipped_files.json); the same as --set data.strict=true",
    )
    p.add_argument(
        "--skip_bad_shards",
        "--skip-bad-shards",
        action="store_true",
        help="training from shards: leave out the items of a missing or truncated shard and list it in "
        "<run>/skipped_files.json (default: stop with an error naming it); = --set data.skip_bad_shards=true",
    )
    # `python -m torch.distributed.launch` (deprecated) passes --local-rank=N; torchrun sets LOCAL_RANK.
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, help=argparse.SUPPRESS)
    _common(p)


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="inspect configuration")
    what = p.add_subparsers(dest="what", required=True, metavar="{show}")
    show = what.add_parser("show", help="print the resolved, validated config as YAML")
    _config_args(show, default=None)
    _common(show)
    show.set_defaults(handler="cinematic.cli:config_show_command")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="demo data, preprocessing, cleaning, reports, augmentation")
    what = p.add_subparsers(
        dest="what", required=True, metavar="{demo,preprocess,shard,tokenize,clean,report,augment}"
    )

    d = what.add_parser("demo", help="write a small demo data set in the seed layout")
    d.add_argument("out_dir")
    d.add_argument("--seed", type=int, default=0)
    _common(d)
    d.set_defaults(handler="cinematic.data.demo:demo_command")

    pre = what.add_parser(
        "preprocess", help="compute and cache what training computes first (features, tokens, tokenizers)"
    )
    pre.add_argument("kind", choices=registry.trainable(), help="model family")
    pre.add_argument("data_dir")
    pre.add_argument("--work_dir", "--work-dir")
    _config_args(pre)
    _common(pre)
    pre.set_defaults(handler="cinematic.launch:preprocess_command")

    sh = what.add_parser(
        "shard",
        help="write a corpus's training items into streaming shards (train with --data_dir SHARDS)",
        description="Build FAMILY's training items from DIR and write them into litdata shards; "
        "`cinematic train FAMILY --data_dir SHARDS` trains from them (docs/streaming.md). Under torchrun "
        "the ranks share the work.",
    )
    sh.add_argument("kind", choices=registry.trainable(), help="model family")
    sh.add_argument("data_dir")
    sh.add_argument("--out", required=True, help="shard folder to write")
    sh.add_argument("--work_dir", "--work-dir", help="where the feature cache lives (default ./work_dir)")
    sh.add_argument(
        "--chunk_bytes",
        "--chunk-bytes",
        type=int,
        default=1 << 26,
        help="largest chunk file in bytes (default 64 MiB; an item larger than this gets a chunk of its own)",
    )
    _config_args(sh)
    _common(sh)
    sh.set_defaults(handler="cinematic.launch:shard_command")

    tok = what.add_parser("tokenize", help="fit the audio tokenizer (mel RVQ) of the music audio route")
    tok.add_argument("data_dir")
    tok.add_argument("--work_dir", "--work-dir")
    tok.add_argument("--out", help="where to write the tokenizer (default <work_dir>/music/tokenizer.pth)")
    _config_args(tok)
    _common(tok)
    tok.set_defaults(handler="cinematic.data.tokenizers.mel_rvq:tokenize_command")

    cl = what.add_parser("clean", help="audit a data folder and write a cleaned copy and a report")
    cl.add_argument("data_dir")
    cl.add_argument("--out", help="cleaned copy (default <data_dir>_clean)")
    cl.add_argument("--report", help="JSON report path (default <out>/cleaning_report.json)")
    _config_args(cl)
    _common(cl)
    cl.set_defaults(handler="cinematic.data.cleaning:clean_command")

    rep = what.add_parser("report", help="composition / balance report (HTML with charts, and JSON)")
    rep.add_argument("data_dir")
    rep.add_argument("--out", required=True, help="report.html")
    _common(rep)
    rep.set_defaults(handler="cinematic.data.report:report_command")

    aug = what.add_parser("augment", help="write N augmented variations of one audio file")
    aug.add_argument("input")
    aug.add_argument("--variations", type=int, default=1000)
    aug.add_argument("--out", required=True)
    aug.add_argument("--seed", type=int, default=0)
    aug.add_argument("--workers", type=int, default=None)
    aug.add_argument("--subtype", default="PCM_16", help="WAV subtype: PCM_16 (default), PCM_24, FLOAT")
    _common(aug)
    aug.set_defaults(handler="cinematic.data.augmentation:augment_command")


def _add_song(generate: argparse._SubParsersAction) -> None:
    """`cinematic generate song`: it uses three families (music, lyrics, singing), so it is registered here
    rather than by one of them."""
    p = generate.add_parser(
        "song",
        help="a song: lyrics, melody, sung vocals, accompaniment, mix",
        description="Write a song from a music, a lyrics and a singing checkpoint (docs/song.md).",
    )
    p.add_argument("--music", required=True, metavar="CKPT", help="symbolic music checkpoint")
    p.add_argument("--lyrics", metavar="CKPT", help="lyrics checkpoint (not needed with --lyrics_file)")
    p.add_argument("--singer", required=True, metavar="CKPT", help="singing checkpoint")
    p.add_argument(
        "--vocoder",
        metavar="VCKPT",
        help="vocoder checkpoint, or 'harmonic' (source-filter, exactly in tune); default: the recorded one",
    )
    p.add_argument("--language", required=True)
    p.add_argument("--emotion", required=True)
    p.add_argument("--genre")
    p.add_argument("--scene")
    p.add_argument("--key", help="e.g. 'D minor' (default: by emotion)")
    p.add_argument("--tempo", type=float, help="beats per minute (default: by emotion)")
    p.add_argument("--lyrics_file", "--lyrics-file", help="your lyrics (UTF-8, [verse]/[chorus] markers)")
    p.add_argument("--melody", help="your melody: .mid (one note per syllable) or MusicXML")
    p.add_argument("--reference", help="sing like the voice in this clip (zero-shot)")
    p.add_argument(
        "--timbre_strength", "--timbre-strength", type=float, default=1.0,
        help="with --reference: the reference-timbre step's strength (0: the singing model's zero-shot voice "
        "alone; at most 2), as in `cinematic sing`",
    )  # fmt: skip
    p.add_argument("--singer_name", "--singer-name", help="a training singer of the singing model")
    p.add_argument("--structure", default="verse,chorus,chorus", help="sections of generated lyrics")
    p.add_argument("--duration", type=float, help="at most this many seconds: the lines that fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, metavar="DIR")
    _common(p)
    p.set_defaults(handler="cinematic.generation.song:song_command")


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export",
        help="one shareable file that generates: inference weights, settings, vocabularies, vocoder",
        description="Write the model of a checkpoint as one file that generates anywhere (docs/export.md).",
    )
    e.add_argument("--checkpoint", required=True, help="training checkpoint (or an exported model)")
    e.add_argument(
        "--vocoder",
        metavar="VCKPT",
        help="music audio route, voice: embed this vocoder (default: the recorded one)",
    )
    e.add_argument("--out", required=True, help="the exported model, e.g. model.cinematic")
    _common(e)
    e.set_defaults(handler="cinematic.export:export_command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cinematic",
        description="Train and run the models behind cinematic music and song generation.",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    generate = sub.add_parser("generate", help="generate music or lyrics from a checkpoint")
    evaluate = sub.add_parser("evaluate", help="objective metrics of a trained model")
    groups = CommandGroups(
        top=sub,
        generate=generate.add_subparsers(dest="what", required=True),
        evaluate=evaluate.add_subparsers(dest="what", required=True),
    )
    for family in registry.families().values():
        if family.add_commands is not None:
            family.add_commands(groups)
    _add_song(groups.generate)
    for group in (groups.generate, groups.evaluate):
        group.metavar = "{" + ",".join(group.choices) + "}"
    _add_config(sub)
    _add_data(sub)
    _add_export(sub)
    q = sub.add_parser("quickstart", help="make demo data, train tiny models, write samples")
    q.add_argument("--work_dir", "--work-dir", default="./work_dir")
    _common(q)
    q.set_defaults(handler="cinematic.quickstart:quickstart_command")
    return parser


def config_show_command(args: argparse.Namespace) -> int:
    print(registry.load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    handler = import_object(args.handler)
    return int(handler(args) or 0)


def import_object(spec: str) -> Any:
    """ "package.module:attr" -> the object."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except UserError as err:  # e.g. two installed families with one name
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
