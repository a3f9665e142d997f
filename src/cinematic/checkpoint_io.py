"""Reading checkpoints for inference (safe loading, the weights of one model), and recording a
finished companion (a vocoder) in a run's checkpoints.

Below every layer that reads checkpoints (training, inference, the CLI), so that none of them has to
import another for it. Checkpoints hold tensors and plain containers only, so
`torch.load(weights_only=True)` reads them and loading never runs code from the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cinematic.errors import UserError
from cinematic.utils import atomic_write


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`) with clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.pth")) if path.parent.is_dir() else []
        hint = f"; checkpoints there: {', '.join(siblings)}" if siblings else ""
        raise UserError(f"checkpoint not found: {path}{hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, unpickling refused
        raise UserError(
            f"{path}: not a readable cinematic checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(checkpoint, dict) or "task" not in checkpoint:
        raise UserError(f"{path}: not a cinematic checkpoint (no 'task' entry)")
    return checkpoint


def model_state_dict(
    checkpoint: dict[str, Any], name: str, prefer_ema: bool = True
) -> dict[str, torch.Tensor]:
    """The weights of model `name` for inference: the EMA weights when the run kept them."""
    ema = checkpoint.get("ema") or {}
    if prefer_ema and name in ema:
        return ema[name]
    models = checkpoint.get("model") or {}
    if name not in models:
        raise UserError(f"checkpoint has no model {name!r}; it holds: {', '.join(models) or 'none'}")
    return models[name]


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved from a DDP- or compile-wrapped model load into the plain one."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def inference_weights(checkpoint: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    """Model `name`'s weights for a plain (unwrapped) model: the EMA weights when the run kept them."""
    return strip_prefixes(model_state_dict(checkpoint, name))


def record_in_checkpoints(ckpt_dir: str | Path, key: str, value: Any) -> list[Path]:
    """Set `task_state[key] = value` in every checkpoint of a run folder (atomically, one file at a
    time), e.g. the vocoder a voice or music run was paired with after it finished."""
    done = []
    for path in sorted(Path(ckpt_dir).glob("*.pth")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint.setdefault("task_state", {})[key] = value
        mode = path.stat().st_mode & 0o777  # keep the file's permissions
        atomic_write(path, lambda handle, obj=checkpoint: torch.save(obj, handle), mode=mode)
        done.append(path)
    return done
