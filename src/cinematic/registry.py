"""The registry of model families: the one place that knows which families exist.

Built-in families are the `FAMILY` records at the end of their task modules; outside packages add
theirs through the entry-point group `cinematic.tasks` (see docs/extending.md)::

    [project.entry-points."cinematic.tasks"]
    toy = "my_package.toy_task:FAMILY"

The root `Config` (one section per family), the `cinematic train` choices, the generate commands,
the quickstart stages and `cinematic.load` are all derived from the records collected here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from cinematic.configs import Config, make_config_class, use_config_class
from cinematic.configs import config_from_dict as _config_from_dict
from cinematic.configs import load_config as _load_config
from cinematic.errors import UserError
from cinematic.training.family import ModelFamily

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cinematic.tasks"
BUILTIN_MODULES = (
    "cinematic.tasks.music",
    "cinematic.tasks.music_audio",
    "cinematic.tasks.voice",
    "cinematic.tasks.vocoder",
    "cinematic.tasks.lyrics",
    "cinematic.tasks.singing",
)

_families: dict[str, ModelFamily] = {}
_loaded = False


def _records(obj: Any, origin: str) -> list[ModelFamily]:
    records = list(obj) if isinstance(obj, list | tuple) else [obj]
    for record in records:
        if not isinstance(record, ModelFamily):
            raise UserError(f"{origin}: expected a cinematic ModelFamily, got {type(record).__name__}")
    return records


def _load_builtins_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        mod = importlib.import_module(module)
        for record in _records(getattr(mod, "FAMILIES", None) or mod.FAMILY, module):
            _add(record)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            records = _records(entry.load(), f"entry point {entry.name} ({entry.value})")
        except UserError:
            raise
        except Exception as err:  # a broken plugin must not take the built-in families down with it
            log.warning(
                "skipping model family plugin %s (%s): %s: %s",
                entry.name,
                entry.value,
                type(err).__name__,
                err,
            )
            continue
        for record in records:
            _add(record)
    _loaded = True
    _install_config_class()


def _add(family: ModelFamily) -> None:
    known = _families.get(family.name)
    if known is not None and known is not family:
        raise UserError(f"two model families are named {family.name!r}; rename one of them")
    _families[family.name] = family


def _install_config_class() -> None:
    sections: dict[str, Any] = {}
    task_sections: dict[str, str] = {}
    for family in _families.values():
        if family.section is None or family.config is None:
            continue
        other = sections.setdefault(family.section, family.config)
        if other is not family.config:
            raise UserError(
                f"model families disagree on the config class of section {family.section!r}: "
                f"{other.__name__} and {family.config.__name__}"
            )
        task_sections[family.name] = family.section
        task_name = getattr(family.task, "name", None)  # the task key its checkpoints carry
        if isinstance(task_name, str):
            task_sections.setdefault(task_name, family.section)
    use_config_class(make_config_class(sections, task_sections))


def register(family: ModelFamily) -> ModelFamily:
    """Add a family (at run time; packages usually use the entry point instead)."""
    _load_builtins_and_plugins()
    _add(family)
    _install_config_class()
    return family


def unregister(name: str) -> None:
    _families.pop(name, None)
    _install_config_class()


@contextlib.contextmanager
def registered(*families: ModelFamily) -> Iterator[None]:
    """The families known for the duration of a block (tests, benchmarks)."""
    for family in families:
        register(family)
    try:
        yield
    finally:
        for family in families:
            unregister(family.name)


def families() -> dict[str, ModelFamily]:
    """Every known family by name, in registration order."""
    _load_builtins_and_plugins()
    return dict(_families)


def get(name: str) -> ModelFamily:
    known = families()
    if name not in known:
        raise UserError(f"unknown model family {name!r}; choose one of: {', '.join(known)}")
    return known[name]


def trainable() -> list[str]:
    return [name for name, family in families().items() if family.trainable]


def config_class() -> type[Config]:
    """The root config class with a section for every family."""
    _load_builtins_and_plugins()
    from cinematic.configs import config_class as installed

    return installed()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """`cinematic.configs.load_config` with every family's section."""
    return _load_config(path, overrides, config_class=config_class())


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    return _config_from_dict(raw, source, config_class=config_class())


def family_of_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> ModelFamily:
    """The family a checkpoint belongs to (a checkpoint may name a task several families share)."""
    for family in families().values():
        if family.owns_checkpoint(checkpoint):
            return family
    raise UserError(
        f"{source}: no installed model family reads a {checkpoint.get('task')!r} checkpoint "
        f"(known: {', '.join(families())}); is the package that trained it installed?"
    )


def routed(
    family: ModelFamily, cfg: Config, data_dir: Path, checkpoint: dict[str, Any] | None
) -> ModelFamily:
    """The family that really trains this run (music: the MIDI or the audio route)."""
    if family.route is None:
        return family
    return get(family.route(cfg, data_dir, checkpoint))


def load(checkpoint: dict[str, Any], device: Any = "cpu", source: str = "checkpoint", **kwargs: Any) -> Any:
    """The ready inference object of a checkpoint (what `cinematic.load` returns)."""
    family = family_of_checkpoint(checkpoint, source)
    if family.load is None:
        raise UserError(f"{source}: the {family.name!r} family has no inference loader")
    return family.load(checkpoint, device=device, **kwargs)
