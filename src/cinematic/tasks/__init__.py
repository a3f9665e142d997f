"""Tasks: one per model family, plugged into the one trainer (see `cinematic.tasks.base`)."""

from __future__ import annotations

import importlib
from typing import Any

from cinematic.errors import UserError

# task name -> "module:class". vocoder_music is the HiFi-GAN task at the music MelConfig.
TASKS = {
    "music": "cinematic.tasks.music:MusicTask",
    "voice": "cinematic.tasks.voice:VoiceTask",
    "vocoder": "cinematic.tasks.vocoder:VocoderTask",
    "vocoder_music": "cinematic.tasks.vocoder:MusicVocoderTask",
    "lyrics": "cinematic.tasks.lyrics:LyricsTask",
}


def import_object(spec: str) -> Any:
    """ "package.module:attr" -> the object; a module this version lacks is a UserError, not a traceback."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("cinematic"):
            raise UserError(f"{module_name} is not available in this version of cinematic") from None
        raise
    return getattr(module, attr)


def get_task(name: str) -> Any:
    """A fresh task instance by name."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return import_object(TASKS[name])()
