"""`cinematic.load(checkpoint)`: the generator object of any checkpoint (DESIGN §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cinematic.errors import UserError


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


def load(checkpoint: str | Path | dict[str, Any], device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """Pick the task from the checkpoint and return its generator object (music, lyrics, voice, vocoder)."""
    from cinematic.tasks import get_task

    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    task_name = ckpt["task"]
    return get_task(task_name).inference(ckpt, device=device, **kwargs)
