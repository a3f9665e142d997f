"""Sharded training checkpoints of FSDP2 runs, written with `torch.distributed.checkpoint` (DCP).

An FSDP2 run (`training.strategy: fsdp` under torchrun) never gathers its weights or optimizer state
on one rank to save them: each rank writes its own shards, and the folder loads on any world size
(DCP reshards on load: 2 ranks → 1 process, 2 → 4, …). Layout of one checkpoint::

    <run_dir>/checkpoints/step_<n>.dcp/
        .metadata              DCP's index: every tensor's global shape and where its pieces are
        __<rank>_0.distcp      one file per rank: its shards of the weights, EMA and optimizer state
        train_state.pth        rank 0: everything small (step, epoch, config, task state, schedulers,
                               scalers, every rank's RNG streams, optimizer hyperparameters),
                               `torch.load(weights_only=True)`-loadable

The folder is written as `.step_<n>.dcp.partial/` and renamed once every rank has written its file
and rank 0 the rest, so a folder with its final name is complete (a killed save leaves a `.partial`
folder, removed at the next start). `--resume auto` takes the newest of these folders and `last.pth`
(a single-file checkpoint of a non-FSDP run in the same folder) by step. The newest
`max(keep_last_k, 1)` folders are kept. `best.pth` stays one consolidated file with the model and EMA
weights (gathered one FSDP unit at a time to rank 0's CPU) and no optimizer state: it is for
inference and export, not for resuming.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from cinematic.errors import UserError
from cinematic.utils import atomic_write, default_file_mode

log = logging.getLogger("cinematic.training")

FOLDER = re.compile(r"^step_(\d+)\.dcp$")
STATE_FILE = "train_state.pth"
FOLDER_KEY = "sharded_folder"
"""Set (at read time) in the dict `read_state` returns: the folder the tensors are loaded from."""
LAYOUT_KEY = "sharded_layout"
"""In train_state.pth: {top-level key: [names]} of what the DCP files hold (model, ema, optimizers)."""


def folder_name(step: int) -> str:
    return f"step_{step}.dcp"


def is_sharded_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / ".metadata").is_file() and (path / STATE_FILE).is_file()


def sharded_folders(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """The complete sharded checkpoints in `ckpt_dir`, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := FOLDER.match(p.name))]
    return sorted((step, path) for step, path in found if is_sharded_checkpoint(path))


def read_state(path: Path) -> dict[str, Any]:
    """train_state.pth of a sharded checkpoint, with `FOLDER_KEY` set; a UserError when unreadable."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path}: unreadable sharded checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not {"step", "task", LAYOUT_KEY} <= set(state):
        raise UserError(f"{path}: not a cinematic sharded checkpoint (no step/task/layout in {STATE_FILE})")
    state[FOLDER_KEY] = str(path)
    return state


def remove_partial(ckpt_dir: Path) -> None:
    """Folders a killed sharded save left behind."""
    if ckpt_dir.is_dir():
        for path in ckpt_dir.glob(".step_*.dcp.partial"):
            shutil.rmtree(path, ignore_errors=True)


def prune(ckpt_dir: Path, keep: int) -> None:
    folders = sharded_folders(ckpt_dir)
    for _, path in folders[: max(0, len(folders) - max(keep, 1))]:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------- save / load


def save(
    tensors: dict[str, Any], state: dict[str, Any] | None, ckpt_dir: Path, step: int, env: Any, keep: int
) -> Path:
    """Write one sharded checkpoint (every rank calls it: `tensors` holds this rank's shards; `state`,
    the small pieces, is rank 0's and None elsewhere). Returns the folder."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    final = ckpt_dir / folder_name(step)
    partial = ckpt_dir / f".{final.name}.partial"
    if env.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    env.barrier()  # the empty folder exists before any rank writes into it
    distributed = env.is_distributed and dist.is_initialized()
    dcp.save(tensors, checkpoint_id=partial, no_dist=not distributed)
    # dcp.save returns on rank 0 after every rank reported its write (its .metadata lists them).
    if env.is_main_process:
        assert state is not None
        atomic_write(partial / STATE_FILE, lambda handle: torch.save(state, handle), mode=default_file_mode())
        if final.exists():  # the same step saved again (a resumed run): replace it whole
            shutil.rmtree(final)
        partial.rename(final)
        prune(ckpt_dir, keep)
    env.barrier()  # no rank goes on (and maybe saves again) before the folder has its name
    return final


def read_full(folder: Path) -> dict[str, Any]:
    """A sharded checkpoint as the single-file layout (docs/training.md): every tensor whole, in one
    process's memory (for inspection, tests and conversion, not for resuming a large run)."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    state = read_state(Path(folder))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp_to_torch_save(folder, Path(tmp) / "full.pth")
        tensors = torch.load(Path(tmp) / "full.pth", map_location="cpu", weights_only=True)
    for phase, extra in (state.get("optimizers") or {}).items():
        tensors.setdefault("optimizers", {}).setdefault(phase, {}).update(extra)
    for key in (LAYOUT_KEY, FOLDER_KEY, "optimizers"):
        state.pop(key, None)
    return {**state, **tensors}


def load(template: dict[str, Any], folder: Path) -> None:
    """Fill `template` (this rank's tensors, in the layout of the checkpoint, any world size) in place
    from `folder`; a UserError when the shapes or names do not fit."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    distributed = dist.is_available() and dist.is_initialized()
    try:
        with warnings.catch_warnings():  # one process: DCP says it assumes so
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(template, checkpoint_id=folder, no_dist=not distributed)
    except Exception as err:  # CheckpointException wraps every rank's error
        text = str(err).strip().splitlines()
        raise UserError(
            f"cannot load the sharded checkpoint {folder} into the models built now: "
            f"{type(err).__name__}: {' '.join(text)[:600]}; the model configuration changed?"
        ) from None
