"""`cinematic train TASK` and the seed scripts: resolve config, data and resume, then run the task's
recipe (most tasks: one trainer run; voice: acoustic model then vocoder; music audio: tokenizer,
transformer, vocoder)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cinematic.configs import Config, config_from_dict, load_config
from cinematic.configs.loading import apply_overrides
from cinematic.errors import UserError

log = logging.getLogger(__name__)


def resolve_run_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """Config and data folder for a training command.

    `--resume PATH` without `--config` takes both from the checkpoint, so a run continues exactly as it
    was started; so does `--resume auto` without `--config` and without ./config.yaml, from the newest
    valid checkpoint in <--work_dir or ./work_dir>/<task>/ (a `torchrun --max-restarts` restart needs
    nothing else). Otherwise `--config` (default ./config.yaml when present) and `--data_dir` (default
    ./data/<task>)."""
    data_dir = args.data_dir
    checkpoint, source = None, None
    if args.resume and args.resume != "auto" and args.config is None:
        from cinematic.api import read_checkpoint

        checkpoint, source = read_checkpoint(args.resume), args.resume
    elif args.resume == "auto" and args.config is None and not Path("config.yaml").is_file():
        from cinematic.training.checkpointing import find_resume_checkpoint

        ckpt_dir = Path(args.work_dir or "./work_dir") / args.task / "checkpoints"
        found = find_resume_checkpoint(ckpt_dir)
        if found is not None:
            source, checkpoint = str(found[0]), found[1]
            log.info("--resume auto without --config: using the config stored in %s", source)
    if checkpoint is not None:
        cfg = config_from_dict(apply_overrides(checkpoint["config"], args.overrides), source=str(source))
        data_dir = data_dir or checkpoint.get("data_dir")
    else:
        config_path = args.config
        if config_path is None and Path("config.yaml").is_file():
            config_path = "config.yaml"
        if config_path is None:
            log.warning("no --config given and no ./config.yaml here: using the built-in defaults")
        cfg = load_config(config_path, args.overrides)
    if args.work_dir:
        cfg.training.work_dir = args.work_dir
    data_dir = Path(data_dir or f"./data/{args.task}")
    if not data_dir.is_dir():
        raise UserError(
            f"data folder not found: {data_dir}\n(pass --data_dir DIR; `cinematic data demo ./data` writes a "
            "small demo data set in the expected layout)"
        )
    return cfg, data_dir


def train_command(args: argparse.Namespace) -> int:
    from cinematic.tasks import TASKS, import_object
    from cinematic.training.distributed import configure_logging

    configure_logging()
    cfg, data_dir = resolve_run_config(args)
    module = TASKS[args.task].partition(":")[0]
    try:
        recipe = import_object(f"{module}:train_recipe")
    except AttributeError:
        recipe = None
    if recipe is not None:
        recipe(cfg, data_dir, resume=args.resume, args=args)
        return 0
    from cinematic.training.trainer import run_training

    run_training(args.task, cfg, data_dir, resume=args.resume)
    return 0
