"""`cinematic.load(checkpoint)`: the generator object of any checkpoint (DESIGN §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cinematic import registry
from cinematic.checkpoint_io import read_checkpoint

__all__ = ["load", "read_checkpoint"]


def load(checkpoint: str | Path | dict[str, Any], device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """The ready generator/synthesizer of a checkpoint of any model family (music, lyrics, voice, vocoder,
    or an installed plugin's): the registry picks the family from the checkpoint."""
    if isinstance(checkpoint, dict):
        return registry.load(checkpoint, device=device, **kwargs)
    kwargs.setdefault("checkpoint_path", str(checkpoint))
    return registry.load(read_checkpoint(checkpoint), device=device, source=str(checkpoint), **kwargs)
