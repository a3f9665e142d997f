"""`cinematic train FAMILY` and the seed scripts: resolve config, data and resume, pick the family that
really trains the data (music: the MIDI or the audio route), then run its recipe (most families: one
trainer run; voice: acoustic model then vocoder; music audio: tokenizer, transformer, vocoder).
Also `cinematic data preprocess FAMILY DIR`, which runs the build a training run starts with."""

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
    if not data_dir.is_dir():
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
    `build` runs, so a later `cinematic train` with the same config and --work_dir only reads them."""
    import torch

    from cinematic.training.distributed import configure_logging
    from cinematic.training.task import BuildContext

    configure_logging()
    cfg = registry.load_config(args.config, args.overrides)
    if args.work_dir:
        cfg.training.work_dir = args.work_dir
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    family = registry.routed(registry.get(args.kind), cfg, data_dir, None)
    task = family.task_instance()
    work_dir = Path(cfg.training.work_dir)
    run_name = cfg.training_for(task.name).run_name or task.name
    ctx = BuildContext(run_dir=work_dir / run_name, cache_dir=work_dir / "cache", device=torch.device("cpu"))
    start = time.perf_counter()
    built = task.build(cfg, data_dir, ctx)
    val = len(built.val_set) if built.val_set is not None else 0
    print(
        f"{family.name}: {len(built.train_set)} training and {val} validation items from {data_dir} in "
        f"{time.perf_counter() - start:.1f} s; cache {ctx.cache_dir} (training with this config and "
        "--work_dir reuses it)"
    )
    return 0
