"""The `cinematic` command (DESIGN §1). Each subcommand names the function that runs it, imported only
when used, so `cinematic --help` is instant and a missing optional part fails with a clear message.

Errors a user can cause raise `UserError`: printed as one paragraph, exit status 2 (`--debug` shows the
traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cinematic.errors import UserError

TRAINABLE = ["music", "voice", "vocoder", "lyrics"]


def _common(parser: argparse.ArgumentParser, root: bool = False) -> None:
    # A subcommand's own default would overwrite `cinematic --debug CMD`: only the root sets one.
    default = False if root else argparse.SUPPRESS
    parser.add_argument("--debug", action="store_true", default=default, help="show full tracebacks")


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
    p.add_argument("task", choices=TRAINABLE)
    add_train_arguments(p)
    p.set_defaults(handler="cinematic.training.launch:train_command")


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
    # `python -m torch.distributed.launch` (deprecated) passes --local-rank=N; torchrun sets LOCAL_RANK.
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, help=argparse.SUPPRESS)
    _common(p)


def _sampling_args(p: argparse.ArgumentParser, temperature: float) -> None:
    p.add_argument("--temperature", type=float, default=temperature)
    p.add_argument("--top_k", "--top-k", type=int, default=None)
    p.add_argument("--top_p", "--top-p", type=float, default=None)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight (1 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate music or lyrics from a checkpoint")
    what = p.add_subparsers(dest="what", required=True, metavar="{music,lyrics}")

    m = what.add_parser("music", help="write a MIDI (symbolic route) or WAV (audio route) file")
    m.add_argument("--checkpoint", required=True)
    m.add_argument("--emotion")
    m.add_argument("--genre")
    m.add_argument("--scene")
    m.add_argument("--primer", help="MIDI file to continue (symbolic route)")
    m.add_argument("--length", type=int, default=1024, help="tokens to generate (symbolic route)")
    m.add_argument("--duration", type=float, default=10.0, help="seconds to generate (audio route)")
    m.add_argument("--vocoder", help="music vocoder checkpoint (audio route; default: the one recorded)")
    _sampling_args(m, temperature=1.0)
    m.add_argument("--out", required=True, help="out.mid or out.wav")
    _common(m)
    m.set_defaults(handler="cinematic.generation.music:generate_command")

    lyr = what.add_parser("lyrics", help="write song lyrics")
    lyr.add_argument("--checkpoint", required=True)
    lyr.add_argument("--language", required=True)
    lyr.add_argument("--emotion")
    lyr.add_argument("--genre")
    lyr.add_argument("--scene")
    lyr.add_argument("--prompt", help="first line(s) to continue")
    lyr.add_argument("--structure", help="e.g. verse,chorus,verse,chorus")
    _sampling_args(lyr, temperature=0.9)
    lyr.add_argument("--repetition_penalty", "--repetition-penalty", type=float, default=1.1)
    lyr.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=300)
    lyr.add_argument("--num_samples", "--num-samples", type=int, default=1)
    lyr.add_argument("--out", required=True)
    _common(lyr)
    lyr.set_defaults(handler="cinematic.generation.lyrics:generate_command")


def _add_voice_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synthesize", help="speak text with a trained voice model")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--vocoder", help="vocoder checkpoint (default: the one recorded in the checkpoint)")
    s.add_argument("--text", required=True)
    s.add_argument("--language", default="en")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", help="a speaker the model was trained or adapted on")
    who.add_argument("--reference", help="a WAV clip of a voice to clone zero-shot")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--pitch", type=float, default=0.0, help="pitch shift in semitones")
    s.add_argument("--energy", type=float, default=1.0, help="energy scale")
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", required=True)
    _common(s)
    s.set_defaults(handler="cinematic.generation.speech:synthesize_command")

    v = sub.add_parser("vocode", help="mel (or a WAV, for copy-synthesis) to waveform with HiFi-GAN")
    v.add_argument("--checkpoint", required=True)
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav")
    src.add_argument("--mel", help=".npy log-mel array (n_mels, frames)")
    v.add_argument(
        "--chunk_frames",
        "--chunk-frames",
        type=int,
        default=None,
        help="synthesize long inputs in chunks of this many frames",
    )
    v.add_argument("--device", default="cpu")
    v.add_argument("--out", required=True)
    _common(v)
    v.set_defaults(handler="cinematic.generation.vocode:vocode_command")

    c = sub.add_parser("clone", help="adapt a voice model to a new speaker from a few minutes of audio")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--reference_dir", "--reference-dir", required=True)
    c.add_argument(
        "--speaker_name", "--speaker-name", help="name to use with --speaker (default: folder name)"
    )
    c.add_argument("--full", action="store_true", help="fine-tune all weights, not only the speaker parts")
    c.add_argument("--steps", type=int, default=200)
    c.add_argument("--device", default="cpu")
    c.add_argument("--out", required=True)
    _common(c)
    c.set_defaults(handler="cinematic.generation.speech:clone_command")

    e = sub.add_parser("evaluate", help="objective metrics of a trained model")
    kind = e.add_subparsers(dest="what", required=True, metavar="{voice}")
    ev = kind.add_parser("voice", help="MCD, F0 RMSE, speaker similarity, duration error")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--vocoder")
    ev.add_argument("--data_dir", "--data-dir", required=True)
    ev.add_argument("--out", help="write the JSON report here")
    ev.add_argument("--device", default="cpu")
    _common(ev)
    ev.set_defaults(handler="cinematic.generation.speech:evaluate_command")


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
        dest="what", required=True, metavar="{demo,preprocess,tokenize,clean,report,augment}"
    )

    d = what.add_parser("demo", help="write a small demo data set in the seed layout")
    d.add_argument("out_dir")
    d.add_argument("--seed", type=int, default=0)
    _common(d)
    d.set_defaults(handler="cinematic.data.demo:demo_command")

    pre = what.add_parser("preprocess", help="extract and cache features")
    pre.add_argument("kind", choices=["music", "voice"])
    pre.add_argument("data_dir")
    pre.add_argument("--work_dir", "--work-dir")
    pre.add_argument("--workers", type=int, default=None)
    _config_args(pre)
    _common(pre)
    pre.set_defaults(handler="cinematic.data.preprocessing:preprocess_command")

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
    rep.set_defaults(handler="cinematic.data.balance:report_command")

    aug = what.add_parser("augment", help="write N augmented variations of one audio file")
    aug.add_argument("input")
    aug.add_argument("--variations", type=int, default=1000)
    aug.add_argument("--out", required=True)
    aug.add_argument("--seed", type=int, default=0)
    aug.add_argument("--workers", type=int, default=None)
    aug.add_argument("--subtype", default="PCM_16", help="WAV subtype: PCM_16 (default), PCM_24, FLOAT")
    _common(aug)
    aug.set_defaults(handler="cinematic.data.augmentation:augment_command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cinematic",
        description="Train and run the models behind cinematic music and song generation.",
    )
    _common(parser, root=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_generate(sub)
    _add_voice_commands(sub)
    _add_config(sub)
    _add_data(sub)
    q = sub.add_parser("quickstart", help="make demo data, train tiny models, write samples")
    q.add_argument("--work_dir", "--work-dir", default="./work_dir")
    _common(q)
    q.set_defaults(handler="cinematic.quickstart:quickstart_command")
    return parser


def config_show_command(args: argparse.Namespace) -> int:
    from cinematic.configs import load_config

    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    from cinematic.tasks import import_object

    handler = import_object(args.handler)
    return int(handler(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
