"""`cinematic train FAMILY` and the seed scripts: resolve config, data and resume, pick the family that
really trains the data (music: the MIDI or the audio route), then run its recipe (most families: one
trainer run; voice: acoustic model then vocoder; music audio: tokenizer, transformer, vocoder).
Also `cinematic data preprocess FAMILY DIR`, which runs the build a training run starts with, and
`cinematic data shard FAMILY DIR --out SHARDS`, which writes the items it builds into streaming shards
(docs/streaming.md); under torchrun both split the files' feature work by rank."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from cinematic import registry
from cinematic.configs import Config
from cinematic.configs.loading import apply_overrides
from cinematic.errors import UserError
from cinematic.training.family import ModelFamily

log = logging.getLogger(__name__)


def _resume_checkpoint(
    args: argparse.Namespace, family: ModelFamily
) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint `--resume` points at (PATH, or for auto the newest valid one in the run folder)."""
    from cinematic.training.checkpointing import find_resume_checkpoint, load_for_resume

    if not args.resume:
        return None, None
    if args.resume != "auto":
        return load_for_resume(args.resume), args.resume
    task_name = getattr(family.task, "name", family.name)
    ckpt_dir = Path(args.work_dir or "./work_dir") / task_name / "checkpoints"
    found = find_resume_checkpoint(ckpt_dir)
    return (found[1], str(found[0])) if found else (None, None)


def resolve_run_config(
    args: argparse.Namespace, family: ModelFamily
) -> tuple[Config, Path, dict[str, Any] | None]:
    """Config and data folder for a training command.

    `--resume PATH` without `--config` takes both from the checkpoint, so a run continues exactly as it
    was started; so does `--resume auto` without `--config` and without ./config.yaml, from the newest
    valid checkpoint in <--work_dir or ./work_dir>/<task>/ (a `torchrun --max-restarts` restart needs
    nothing else). Otherwise `--config` (default ./config.yaml when present) and `--data_dir` (default
    ./data/<task>)."""
    data_dir = args.data_dir
    takes_config = args.config is None and (args.resume != "auto" or not Path("config.yaml").is_file())
    # The trainer reads the checkpoint it resumes from: read it here too only when its config or the
    # route it recorded is needed (a base-size checkpoint is gigabytes).
    needed = takes_config or family.route is not None
    checkpoint, source = _resume_checkpoint(args, family) if needed else (None, None)
    if checkpoint is not None and takes_config:
        if args.resume == "auto":
            log.info("--resume auto without --config: using the config stored in %s", source)
        cfg = registry.config_from_dict(
            apply_overrides(checkpoint["config"], args.overrides), source=str(source)
        )
        data_dir = data_dir or checkpoint.get("data_dir")
    else:
        config_path = args.config
        if config_path is None and Path("config.yaml").is_file():
            config_path = "config.yaml"
        if config_path is None:
            log.warning("no --config given and no ./config.yaml here: using the built-in defaults")
        cfg = registry.load_config(config_path, args.overrides)
    if args.work_dir:
        cfg.training.work_dir = args.work_dir
    if getattr(args, "strict", False):
        cfg.data.strict = True
    data_dir = Path(data_dir or f"./data/{family.data_subdir or family.name}")
    if getattr(args, "skip_bad_shards", False):
        cfg.data.skip_bad_shards = True
    from cinematic.data.shards import is_shard_source

    if not data_dir.is_dir() and not is_shard_source(data_dir):
        raise UserError(
            f"data folder not found: {data_dir}\n(pass --data_dir DIR; `cinematic data demo ./data` writes a "
            "small demo data set in the expected layout)"
        )
    return cfg, data_dir, checkpoint


def train_command(args: argparse.Namespace) -> int:
    from cinematic.training.distributed import configure_logging

    configure_logging()
    family = registry.get(args.task)
    cfg, data_dir, checkpoint = resolve_run_config(args, family)
    from cinematic.data.shards import is_shard_source

    if is_shard_source(data_dir):
        return _train_from_shards(args, family, cfg, data_dir)
    family = registry.routed(family, cfg, data_dir, checkpoint)
    if family.recipe is not None:
        family.recipe(cfg, data_dir, args.resume, args)
        return 0
    from cinematic.training.trainer import run_training

    run_training(family.task_instance(), cfg, data_dir, resume=args.resume)
    return 0


def preprocess_command(args: argparse.Namespace) -> int:
    """`cinematic data preprocess FAMILY DIR`: the features, tokens and tokenizers a training run of
    FAMILY on DIR would compute first, written to the same cache under the same keys — the task's own
    `build` runs, so a later `cinematic train` with the same config and --work_dir only reads them.
    Under torchrun each rank computes the features of its share of the files first; then rank 0 runs
    the whole build (which finds them cached) and reports."""
    from cinematic.training import distributed as D
    from cinematic.training.distributed import configure_logging

    configure_logging()
    cfg, data_dir, family, ctx, env = _prepare(args)
    try:
        start = time.perf_counter()
        _features_by_rank(family.task_instance, cfg, data_dir, ctx, env)
        if env.is_main_process:
            ctx.local_rank, ctx.barrier = 0, lambda: None
            built = family.task_instance().build(cfg, data_dir, ctx)
            val = len(built.val_set) if built.val_set is not None else 0
            print(
                f"{family.name}: {len(built.train_set)} training and {val} validation items from {data_dir} "
                f"in {time.perf_counter() - start:.1f} s ({env.world_size} rank(s)); cache {ctx.cache_dir} "
                "(training with this config and --work_dir reuses it)"
            )
        env.wait_for_others()
    finally:
        D.shutdown(env)
    return 0


# ------------------------------------------------------------------------------------------- shards


def _train_from_shards(args: argparse.Namespace, family: ModelFamily, cfg: Config, data_dir: Path) -> int:
    """`cinematic train FAMILY --data_dir SHARDS`: one trainer run of the family's task, built from the
    shards. The shards name the family that wrote them (the music route is the one sharded)."""
    from cinematic.data.shards import normalize_location, read_manifest
    from cinematic.tasks.sharded import ShardedTask, supports
    from cinematic.training.trainer import run_training

    location = normalize_location(data_dir)
    written_by = read_manifest(location)["family"]
    if written_by != family.name:
        # a family with routes (music) trains the route its shards were written for
        other = registry.families().get(written_by)
        same_task = other is not None and other.task_instance().name == family.task_instance().name
        if family.route is None or not same_task:
            raise UserError(
                f"{location} holds {written_by} shards; train them with `cinematic train {written_by}`"
            )
        family = other
    task = family.task_instance()
    if not supports(task):
        raise UserError(f"the {family.name} family cannot train from shards yet")
    if family.recipe is not None and family.name == "music_audio":
        log.info(
            "music audio route from shards: training the transformer; the music vocoder is not trained "
            "from shards (train it on the data folder, or give one to `cinematic generate music --vocoder`)"
        )
    elif family.recipe is not None:
        if family.name != "voice" or getattr(args, "stage", "all") == "vocoder":
            raise UserError(
                f"{family.name} from shards trains its one model here; shard the vocoder's data with "
                "`cinematic data shard vocoder DIR --out VSHARDS` and train it with "
                "`cinematic train vocoder --data_dir VSHARDS`"
            )
        if getattr(args, "stage", "all") == "all":
            log.info("voice from shards: training the acoustic model (the vocoder has shards of its own)")
    run_training(ShardedTask(task, location), cfg, Path(location), resume=args.resume)
    return 0


def _rank_view(data_dir: Path, view: Path, rank: int, world_size: int, suffixes: tuple[str, ...]) -> int:
    """A folder of symbolic links with the layout of `data_dir`: every `rank`-th of its files with one
    of `suffixes` (audio, MIDI: the files whose features cost), and every other file (transcripts,
    labels, metadata), so the family's reader sees rank's slice as a data folder of its own. The
    feature caches are keyed by content, so what the slice computes serves the whole build."""
    import shutil

    shutil.rmtree(view, ignore_errors=True)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    mine: set[Path] = set()
    for suffix in suffixes:  # each kind shared out on its own (a music folder: MIDI files and renderings)
        mine.update([p for p in files if p.suffix.lower() == suffix][rank::world_size])
    for path in files:
        if path in mine or path.suffix.lower() not in suffixes:
            link = view / path.relative_to(data_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    return len(mine)


def _features_by_rank(task_factory: Any, cfg: Config, data_dir: Path, ctx: Any, env: Any) -> None:
    """Under torchrun: each rank runs the family's build on its slice of the files (`_rank_view`), which
    fills the shared content-hash cache; every rank waits for all. Families whose build has no per-file
    work (lyrics: one tokenizer over the corpus) skip this."""
    from dataclasses import replace

    from cinematic.data.audio import AUDIO_SUFFIXES
    from cinematic.data.dataset import MIDI_SUFFIXES
    from cinematic.data.skips import SkippedFiles

    task = task_factory()
    if env.world_size == 1 or task.name == "lyrics":
        return
    view = ctx.cache_dir / "rank_views" / f"rank{env.rank}"
    count = _rank_view(data_dir, view, env.rank, env.world_size, tuple(AUDIO_SUFFIXES) + MIDI_SUFFIXES)
    log.warning("rank %d: features of %d file(s) of %s", env.rank, count, data_dir)
    own = replace(ctx, local_rank=0, barrier=lambda: None, skipped=SkippedFiles())
    try:
        task.build(cfg, view, own)
    except UserError as err:  # a slice can be too small to build (the whole build reports real errors)
        log.info(
            "rank %d: the build of its slice stopped early (%s); its files' features are kept", env.rank, err
        )
    finally:
        import shutil

        shutil.rmtree(view, ignore_errors=True)
    env.wait_for_others()


def _prepare(args: argparse.Namespace) -> tuple[Config, Path, ModelFamily, Any, Any]:
    """Config, data folder, family, build context and distributed environment of a data command."""
    import torch

    from cinematic.data.skips import SkippedFiles
    from cinematic.training.distributed import init_distributed
    from cinematic.training.task import BuildContext

    cfg = registry.load_config(args.config, args.overrides)
    if args.work_dir:
        cfg.training.work_dir = args.work_dir
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    family = registry.routed(registry.get(args.kind), cfg, data_dir, None)
    env = init_distributed()
    task_name = getattr(family.task_instance(), "name", family.name)
    work_dir = Path(cfg.training.work_dir)
    run_name = cfg.training_for(task_name).run_name or task_name
    ctx = BuildContext(
        run_dir=work_dir / run_name,
        cache_dir=work_dir / "cache",
        device=torch.device("cpu"),
        rank=env.rank,
        local_rank=env.local_rank,
        world_size=env.world_size,
        barrier=env.wait_for_others,
        skipped=SkippedFiles(strict=cfg.data.strict),
    )
    return cfg, data_dir, family, ctx, env


def shard_command(args: argparse.Namespace) -> int:
    """`cinematic data shard FAMILY DIR --out SHARDS` (also under torchrun, see docs/streaming.md)."""
    from tqdm import tqdm

    from cinematic.data.shards import merge_parts, rank_block, write_part
    from cinematic.tasks.sharded import Lazy, export_records, supports
    from cinematic.training import distributed as D
    from cinematic.training.distributed import configure_logging

    configure_logging()
    cfg, data_dir, family, ctx, env = _prepare(args)
    try:
        task = family.task_instance()
        if not supports(task):
            raise UserError(
                f"the {family.name} family cannot be written to shards yet (supported: music, both routes, "
                "lyrics, voice, vocoder, singing)"
            )
        out = Path(args.out)
        if out.resolve() == data_dir.resolve():
            raise UserError("--out must not be the data folder itself")
        start = time.perf_counter()
        _features_by_rank(family.task_instance, cfg, data_dir, ctx, env)
        built = task.build(cfg, data_dir, ctx)
        export = export_records(task, built)
        n_train, n_val = len(export.train), len(export.val)
        records = Lazy(n_train + n_val, lambda i: export.train[i] if i < n_train else export.val[i - n_train])
        block = rank_block(len(records), env.rank, env.world_size)
        bar = tqdm(block, desc=f"{family.name} shards", unit="item", disable=env.rank != 0, mininterval=1.0)
        part = write_part(out, task.name, block, (records[i] for i in bar), args.chunk_bytes)
        keys = D.gather_objects(part["key"], env)
        skipped = D.gather_objects(ctx.skipped.entries, env)[0]
        env.wait_for_others()
        if env.is_main_process:
            manifest = {
                "task": task.name,
                "family": family.name,
                "source": str(data_dir),
                "train_count": n_train,
                "val_count": n_val,
                "meta": export.meta,
                "extra": export.extra,
                "skipped_files": skipped,
                "config": cfg.to_dict(),
            }
            merge_parts(out, keys, manifest, task.export_state())
            print(
                f"{family.name}: {n_train} training and {n_val} validation items from {data_dir} written "
                f"to {out} in {time.perf_counter() - start:.1f} s ({env.world_size} rank(s)); train with "
                f"`cinematic train {family.name} --data_dir {out}`"
            )
        env.wait_for_others()
    finally:
        D.shutdown(env)
    return 0
