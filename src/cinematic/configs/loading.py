"""The root `Config`, YAML loading with `--set` overrides, and error messages a user can act on.

    cfg = load_config("config.yaml", overrides=["training.epochs=3"])
    cfg.training_for("voice")       # global training keys with voice_model.training applied

Unknown keys name their full path and the closest valid key; wrong types name the path, the expected
type and the value. Both are raised as `UserError` (exit status 2 from the CLI).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from cinematic.configs.model_config import (
    LyricsModelConfig,
    MusicModelConfig,
    VocoderConfig,
    VoiceModelConfig,
)
from cinematic.configs.training_config import DataConfig, LoggingConfig, StrictModel, TrainingConfig
from cinematic.errors import UserError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

# Which model section configures each task (and holds its `training:` overrides).
TASK_SECTIONS = {
    "music": "music_model",
    "voice": "voice_model",
    "vocoder": "vocoder",
    "vocoder_music": "vocoder",
    "lyrics": "lyrics_model",
}


class Config(StrictModel):
    """Everything one run needs; `config.yaml` is this, written out."""

    data: DataConfig = Field(default_factory=DataConfig)
    music_model: MusicModelConfig = Field(default_factory=MusicModelConfig)
    voice_model: VoiceModelConfig = Field(default_factory=VoiceModelConfig)
    vocoder: VocoderConfig = Field(default_factory=VocoderConfig)
    lyrics_model: LyricsModelConfig = Field(default_factory=LyricsModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def training_for(self, task: str) -> TrainingConfig:
        """The global training keys with the task's model section `training:` block applied."""
        section = getattr(self, TASK_SECTIONS[task])
        update = section.training.model_dump(exclude_unset=True)
        return TrainingConfig.model_validate({**self.training.model_dump(), **update})

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (JSON types), the shape of config.yaml; override blocks show only set keys."""
        data = self.model_dump(mode="json")
        for name in TASK_SECTIONS.values():
            data[name]["training"] = getattr(self, name).training.model_dump(mode="json", exclude_unset=True)
        if data["data"]["batch_size"] is None:
            del data["data"]["batch_size"]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------- loading


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a built-in preset (`tiny`, `base`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    preset = PRESETS_DIR / f"{path}.yaml"
    if preset.is_file():
        return preset
    presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise UserError(f"config file not found: {path}\n(give a YAML file, or a built-in preset: {presets})")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of sections (data:, training:, ...), got {type(data).__name__}"
        )
    return data


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` strings; values are parsed as YAML (so 3 is an int, 1e-4 a float)."""
    _drop_batch_size_alias(raw, overrides)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key.path=value, e.g. --set training.epochs=3")
        value = _parse_scalar(text)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def _drop_batch_size_alias(raw: dict[str, Any], overrides: list[str]) -> None:
    """`--set training.batch_size=16` on a file (or checkpoint) that writes `data.batch_size: 8` replaces
    the batch size rather than conflicting with it: the file's spelling of it is dropped."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    for given, other in (
        ("training.batch_size", "data.batch_size"),
        ("data.batch_size", "training.batch_size"),
    ):
        section, _, key = other.partition(".")
        if given in keys and other not in keys and isinstance(raw.get(section), dict):
            raw[section].pop(key, None)


def _parse_scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 as a string; users mean a number
            return float(value) if any(c.isdigit() for c in value) else value
        except ValueError:
            return value
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config; any mistake raises `UserError` naming the key."""
    source = "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        source = str(resolved)
        raw = read_yaml(resolved)
    return config_from_dict(apply_overrides(raw, list(overrides or [])), source=source)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    raw = _fold_batch_size_alias(raw, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        by_path: dict[str, str] = {}
        for error in err.errors():  # a union reports once per member: keep the first per key
            line = _describe(error)
            by_path.setdefault(line.split(":", 1)[0], line)
        lines = list(by_path.values())
        raise UserError(f"{source}: invalid configuration\n  " + "\n  ".join(lines)) from None


def _fold_batch_size_alias(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The seed writes `data.batch_size`; the one batch size is `training.batch_size`."""
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("batch_size") is None:
        return raw
    alias = data["batch_size"]
    training = raw.setdefault("training", {})
    if isinstance(training, dict):
        if "batch_size" in training and training["batch_size"] != alias:
            raise UserError(
                f"{source}: data.batch_size ({alias}) and training.batch_size ({training['batch_size']}) "
                "differ; they are the same setting (per-GPU batch size): keep one"
            )
        training["batch_size"] = alias
    return raw


# ---------------------------------------------------------------------------------------- error messages


def _field_loc(loc: tuple) -> tuple:
    """The part of a pydantic error location that names config keys (drops union-member tags)."""
    kept: list = []
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            kept.append(part)
            continue
        if model is None or part not in model.model_fields:
            if model is not None and kept[-1:] != [part]:
                kept.append(part)  # an unknown key: keep it so the message names it
            break
        kept.append(part)
        model = _model_in(model.model_fields[part].annotation)
    return tuple(kept)


def _describe(error: dict[str, Any]) -> str:
    error = {**error, "loc": _field_loc(error["loc"])}
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        suggestion = difflib.get_close_matches(path, _all_paths(Config), n=1, cutoff=0.6)
        hint = (
            f"; did you mean {suggestion[0]}?"
            if suggestion
            else f"; valid keys here: {_siblings(error['loc'])}"
        )
        return f"{path}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    value = error.get("input")
    detail = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":  # a check across keys (e.g. embed_dim vs num_heads): say it plainly
        return f"{path}: {detail}"
    expected = _expected_type(error["loc"])
    if expected:
        return f"{path}: expected {expected}, got {value!r} ({detail})"
    return f"{path}: {detail} (got {value!r})"


def _field_annotation(loc: tuple) -> Any:
    model: Any = Config
    annotation: Any = None
    for part in loc:
        model = _model_in(annotation) if annotation is not None else model
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return annotation if isinstance(part, int) else None
        annotation = model.model_fields[part].annotation
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _expected_type(loc: tuple) -> str | None:
    annotation = _field_annotation(loc)
    return _type_name(annotation) if annotation is not None else None


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        sub = _model_in(field.annotation)
        if sub is not None:
            paths.extend(_all_paths(sub, path + "."))
    return paths


def _siblings(loc: tuple) -> str:
    parent = _field_annotation(loc[:-1]) if len(loc) > 1 else Config
    model = _model_in(parent) if parent is not Config else Config
    return ", ".join(model.model_fields) if model else "?"
