"""Checkpoint files: atomic writes, retention, `--resume auto`, RNG state, and the safetensors export.
What goes into a checkpoint, and when it is written, is `cinematic.training.checkpoint.CheckpointManager`;
reading one for inference is `cinematic.checkpoint_io`.

Layout of `<run_dir>/checkpoints/`:

- `last.pth`: rewritten by every save (periodic, best, final); what `--resume auto` tries first;
- `best.pth`: the checkpoint with the best `training.best_metric` so far;
- `step_<n>.pth`: every `training.checkpoint_every_steps` steps, the newest `training.keep_last_k` kept;
- `step_<n>.dcp/`: instead of the .pth files, under FSDP2: sharded checkpoints
  (`cinematic.training.sharded`), found by `--resume auto` like the files.

Every file is written to a temporary file in the same folder, flushed and fsynced, then renamed over
the target (`os.replace` is atomic on POSIX), so a process killed mid-save leaves the previous file
intact. Contents are tensors and plain containers only: `torch.load(path, weights_only=True)` reads
them (the layout is documented in docs/training.md).
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from cinematic.checkpoint_io import is_export_file, model_state_dict, read_checkpoint
from cinematic.errors import UserError
from cinematic.training import sharded
from cinematic.utils import atomic_write, default_file_mode

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STEP_FILE = re.compile(r"^step_(\d+)\.pth$")


FILE_MODE = default_file_mode()


# ------------------------------------------------------------------------------------------- writing


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` through a temporary file + fsync + rename: readers never see a partial file."""
    atomic_write(path, lambda handle: torch.save(obj, handle), mode=FILE_MODE)
    _fsync_dir(path.parent)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a finished checkpoint (last.pth, best.pth from a step file) with the same guarantees."""

    def copy(out: BinaryIO) -> None:
        with open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 22)

    atomic_write(dst, copy, mode=FILE_MODE)
    _fsync_dir(dst.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after os.replace keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def step_files(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Periodic checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := STEP_FILE.match(p.name))]
    return sorted(found)


def prune_step_files(ckpt_dir: Path, keep_last_k: int) -> None:
    """Delete all but the newest `keep_last_k` step_<n>.pth files."""
    files = step_files(ckpt_dir)
    for _, path in files[: max(0, len(files) - keep_last_k)]:
        path.unlink(missing_ok=True)


def leftover_temp_files(ckpt_dir: Path) -> None:
    """Remove temporary files (and sharded folders) a killed save left behind."""
    if ckpt_dir.is_dir():
        for path in ckpt_dir.glob(".*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
        sharded.remove_partial(ckpt_dir)


# ------------------------------------------------------------------------------------------- reading


def try_load(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(checkpoint, None) or (None, why it is unusable)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, refused by the weights-only unpickler
        return None, f"{type(err).__name__}: {err}"
    if not isinstance(checkpoint, dict) or not {"model", "step", "task"} <= set(checkpoint):
        return None, "not a cinematic training checkpoint (missing model/step/task)"
    return checkpoint, None


def existing_checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    files = sorted(p for p in ckpt_dir.glob("*.pth") if p.is_file())
    return files + [path for _, path in sharded.sharded_folders(ckpt_dir)]


def find_resume_checkpoint(ckpt_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint for `--resume auto`: last.pth unless a periodic file holds a later
    step (a save killed between writing step_<n>.pth and copying it to last.pth). Unreadable files
    (truncated, corrupt) are reported and skipped."""
    last_path = ckpt_dir / "last.pth"
    last: dict[str, Any] | None = None
    if last_path.is_file():
        last, problem = try_load(last_path)
        if last is None:
            log.warning("--resume auto: skipping %s (%s)", last_path, problem)
    found: tuple[Path, dict[str, Any]] | None = (last_path, last) if last is not None else None
    for step, path in reversed(step_files(ckpt_dir)):
        if last is not None and int(last["step"]) >= step:
            break
        checkpoint, problem = try_load(path)
        if checkpoint is not None:
            found = path, checkpoint
            break
        log.warning("--resume auto: skipping %s (%s)", path, problem)
    # Sharded checkpoints (FSDP2) in the same folder: the newest readable one wins if it is later.
    for step, path in reversed(sharded.sharded_folders(ckpt_dir)):
        if found is not None and int(found[1]["step"]) >= step:
            break
        try:
            return path, sharded.read_state(path)
        except UserError as err:
            log.warning("--resume auto: skipping %s (%s)", path, err)
    return found


def load_for_resume(path: str | Path) -> dict[str, Any]:
    """`--resume PATH`: the checkpoint, or a UserError that names what exists."""
    path = Path(path)
    if path.is_dir() and sharded.is_sharded_checkpoint(path):
        return sharded.read_state(path)
    if not path.is_file():
        siblings = existing_checkpoints(path.parent)
        hint = f"; checkpoints there: {', '.join(p.name for p in siblings)}" if siblings else ""
        raise UserError(f"--resume: checkpoint not found: {path}{hint}")
    if is_export_file(path):
        raise UserError(
            f"--resume: {path} is an exported model (inference weights only: no optimizer, scheduler or "
            "RNG state); resume from the training checkpoint it was exported from"
        )
    checkpoint, problem = try_load(path)
    if checkpoint is None:
        raise UserError(f"--resume: {path} is not a usable checkpoint ({problem}); try --resume auto")
    return checkpoint


# ------------------------------------------------------------------------------------------ RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as tensors and plain values."""
    version, py_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------- compatibility check


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, e.g. ['music_model.num_layers: 12 != 6']."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}{key}"
            if key not in old or key not in new:
                out.append(f"{path}: {old.get(key, 'missing')!r} != {new.get(key, 'missing')!r}")
            else:
                out.extend(config_differences(old[key], new[key], path + "."))
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        old, new = list(old), list(new)
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} != {new!r}"]


# ------------------------------------------------------------------------------------ inference helpers


def export_safetensors(checkpoint_path: str | Path, out_path: str | Path, prefer_ema: bool = True) -> Path:
    """Write the inference weights of every model in a checkpoint to one .safetensors file.

    Keys are `<model>.<parameter>`; the task name, step and format version go into the metadata. EMA
    weights are exported when present (as `Task.inference` uses them)."""
    from safetensors.torch import save_file

    checkpoint = read_checkpoint(checkpoint_path)
    tensors: dict[str, torch.Tensor] = {}
    for name in checkpoint.get("model", {}):
        for key, value in model_state_dict(checkpoint, name, prefer_ema).items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{key}"] = value.detach().cpu().contiguous().clone()
    metadata = {
        "task": str(checkpoint["task"]),
        "step": str(checkpoint.get("step", 0)),
        "format_version": str(checkpoint.get("format_version", FORMAT_VERSION)),
        "weights": "ema" if prefer_ema and checkpoint.get("ema") else "model",
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata=metadata)
    return out_path
