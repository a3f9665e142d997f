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
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from cinematic.configs.model_config import vocoder_hop_problems
from cinematic.configs.training_config import (
    DataConfig,
    LoggingConfig,
    StrictModel,
    TrainingConfig,
    raise_problems,
)
from cinematic.errors import UserError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


class Config(StrictModel):
    """Everything one run needs; `config.yaml` is this, written out.

    This base class holds the sections every run shares. The root class actually used adds one section
    per registered model family (`music_model`, `voice_model`, ...): `cinematic.registry` builds it with
    `make_config_class` and installs it with `use_config_class`, so a new family never edits this file."""

    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    task_sections: ClassVar[dict[str, str]] = {}
    """Task name -> the model section that configures it (several tasks may share one section)."""

    @model_validator(mode="after")
    def _cross_section_checks(self) -> Config:
        """Constraints that span sections (each names its key path from the root): the vocoder's
        upsampling, kernels and segment size against the mel hops its vocoders use."""
        raise_problems(vocoder_hop_problems(self), "Config")
        return self

    def section_name(self, task: str) -> str | None:
        """The attribute name of the model section that configures `task` (None: none)."""
        return self.task_sections.get(task)

    def training_for(self, task: str) -> TrainingConfig:
        """The global training keys with the task's model section `training:` block applied."""
        name = self.section_name(task)
        overrides = getattr(getattr(self, name), "training", None) if name else None
        if overrides is None:
            return self.training.model_copy(deep=True)
        update = overrides.model_dump(exclude_unset=True)
        return TrainingConfig.model_validate({**self.training.model_dump(), **update})

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (JSON types), the shape of config.yaml; override blocks show only set keys."""
        data = self.model_dump(mode="json")
        for name in set(self.task_sections.values()):
            overrides = getattr(getattr(self, name), "training", None)
            if isinstance(overrides, BaseModel):
                data[name]["training"] = overrides.model_dump(mode="json", exclude_unset=True)
        if data["data"]["batch_size"] is None:
            del data["data"]["batch_size"]
        shared = ("training", "logging")  # the seed's order: data, model sections, training, logging
        return {**{k: v for k, v in data.items() if k not in shared}, **{k: data[k] for k in shared}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def make_config_class(sections: dict[str, type[BaseModel]], task_sections: dict[str, str]) -> type[Config]:
    """The root config class: `Config` plus one field per model section (each with its defaults)."""
    missing = sorted(set(task_sections.values()) - set(sections))
    if missing:
        raise ValueError(f"task sections without a config class: {', '.join(missing)}")
    fields: dict[str, Any] = {name: (cls, Field(default_factory=cls)) for name, cls in sections.items()}
    root = create_model("Config", __base__=Config, **fields)
    root.task_sections = dict(task_sections)
    return root


_active_class: type[Config] = Config


def use_config_class(config_class: type[Config]) -> None:
    """Install the root config class that `load_config` and `config_from_dict` build (the registry's)."""
    global _active_class
    _active_class = config_class


def config_class() -> type[Config]:
    """The installed root config class (`cinematic.registry` installs the one with every family)."""
    return _active_class


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


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    config_class: type[Config] | None = None,
) -> Config:
    """Read, override and validate a config; any mistake raises `UserError` naming the key."""
    source = "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        source = str(resolved)
        raw = read_yaml(resolved)
    return config_from_dict(
        apply_overrides(raw, list(overrides or [])), source=source, config_class=config_class
    )


def config_from_dict(
    raw: dict[str, Any], source: str = "config", config_class: type[Config] | None = None
) -> Config:
    root = config_class or _active_class
    raw = _fold_batch_size_alias(raw, source)
    try:
        return root.model_validate(raw)
    except ValidationError as err:
        by_path: dict[str, str] = {}
        for error in err.errors():  # a union reports once per member: keep the first per key
            line = _describe(error, root)
            by_path.setdefault(line.split(":", 1)[0], line)
        lines = list(by_path.values())
        if not root.task_sections:
            lines.append("(no model family is registered: load configs with cinematic.registry.load_config)")
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


def _field_loc(loc: tuple, root: type[BaseModel]) -> tuple:
    """The part of a pydantic error location that names config keys (drops union-member tags)."""
    kept: list = []
    model: Any = root
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


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    error = {**error, "loc": _field_loc(error["loc"], root)}
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        suggestion = difflib.get_close_matches(path, _all_paths(root), n=1, cutoff=0.6)
        hint = (
            f"; did you mean {suggestion[0]}?"
            if suggestion
            else f"; valid keys here: {_siblings(error['loc'], root)}"
        )
        return f"{path}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    value = error.get("input")
    detail = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":  # a check across keys (e.g. embed_dim vs num_heads): say it plainly
        return f"{path}: {detail}"
    expected = _expected_type(error["loc"], root)
    if expected:
        return f"{path}: expected {expected}, got {value!r} ({detail})"
    return f"{path}: {detail} (got {value!r})"


def _field_annotation(loc: tuple, root: type[BaseModel]) -> Any:
    model: Any = root
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


def _expected_type(loc: tuple, root: type[BaseModel]) -> str | None:
    annotation = _field_annotation(loc, root)
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


def _siblings(loc: tuple, root: type[BaseModel]) -> str:
    parent = _field_annotation(loc[:-1], root) if len(loc) > 1 else root
    model = _model_in(parent) if parent is not root else root
    return ", ".join(model.model_fields) if model else "?"
