"""Reading checkpoints for inference (safe loading, the weights of one model), recording a finished
companion (a vocoder) in a run's checkpoints and finding it again, and exported models.

Below every layer that reads checkpoints (training, inference, the CLI), so that none of them has to
import another for it. Checkpoints hold tensors and plain containers only, so
`torch.load(weights_only=True)` reads them and loading never runs code from the file.

An exported model (`cinematic export`, docs/export.md) is one safetensors file: its tensors are the
tensors of an inference checkpoint (`inference_checkpoint`: the inference weights, the task state,
an embedded vocoder) and its metadata the rest of that dict as JSON, so reading it is
`safetensors` + `json.loads`. `read_checkpoint` recognises one and returns the same dict shape as for
a training checkpoint, so every loader takes it unchanged.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cinematic.errors import UserError
from cinematic.utils import atomic_write, default_file_mode, file_sha1

log = logging.getLogger(__name__)

EXPORT_FORMAT = "cinematic-model"
"""The `format` metadata entry of an exported model file."""
EXPORT_VERSION = 1
"""The newest export format version this code writes and reads."""
EXPORT_SUFFIX = ".cinematic"
FILE_REFERENCE = "file"
"""`kind` of a `file_reference` in a task state."""
_TENSOR, _TUPLE, _DICT, _SIZE, _BYTES, _DTYPE = (
    "__tensor__", "__tuple__", "__dict__", "__size__", "__bytes__", "__dtype__"
)  # fmt: skip


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`) with clear errors for missing or corrupt files;
    an exported model file (`read_export`) gives the same dict shape."""
    path = Path(path)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.pth")) if path.parent.is_dir() else []
        hint = f"; checkpoints there: {', '.join(siblings)}" if siblings else ""
        raise UserError(f"checkpoint not found: {path}{hint}")
    if is_export_file(path):
        return read_export(path)
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


# ------------------------------------------------------------------------------- companion references


def file_reference(path: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """How a run's checkpoints name another checkpoint generation needs (its vocoder): the file's sha1
    and size, its name, and its path relative to the run folder, so the reference survives moving the
    work folder as a whole and says which file it needs when it does not."""
    path = Path(path).resolve()
    return {
        "kind": FILE_REFERENCE,
        "name": path.name,
        "sha1": file_sha1(path),
        "size": path.stat().st_size,
        "relative_path": Path(os.path.relpath(path, Path(run_dir).resolve())).as_posix(),
    }


def is_file_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("kind") == FILE_REFERENCE and "sha1" in value


def record_companion(ckpt_dir: str | Path, key: str, path: str | Path) -> list[Path]:
    """Record checkpoint `path` (a vocoder) as `task_state[key]` in every checkpoint of the run whose
    checkpoints are in `ckpt_dir`, as a `file_reference` relative to the run folder (ckpt_dir's parent)."""
    return record_in_checkpoints(ckpt_dir, key, file_reference(path, Path(ckpt_dir).parent))


def describe_companion(value: Any) -> str:
    """A reference, an old absolute path or an embedded checkpoint, for messages."""
    if is_file_reference(value):
        return f"{value['name']} (sha1 {value['sha1']}, at {value['relative_path']} from the run folder)"
    if isinstance(value, Mapping):
        return f"the {value.get('task')!r} checkpoint embedded in the model"
    return str(value)


def find_companion(
    value: Any,
    checkpoint_path: str | Path | None,
    what: str = "vocoder",
    runs: Sequence[str] = (),
    hint: str = "",
) -> Path | dict[str, Any]:
    """The checkpoint a model records as its companion (its vocoder): a path to an existing file, or the
    checkpoint dict itself when the model embeds it (an export).

    `value` is what the model's task_state holds: a `file_reference` (searched beside the checkpoint:
    at its path relative to the run folder — `checkpoint_path` is <run>/checkpoints/x.pth — then by
    content among the checkpoints of the work folder's runs), an absolute path (checkpoints written
    before references; also looked for under the same run name in the moved work folder), an embedded
    checkpoint, or None. `runs`: run folders of the work folder that hold the default companion
    (e.g. "vocoder_music"), tried last. A file found by content is used as is; one found only by place
    is another version (trained further, replaced) and is used with a warning. None found: a UserError
    naming the file (name and sha1) and ending with `hint`."""
    if isinstance(value, Mapping) and not is_file_reference(value):
        return dict(value)  # embedded by `cinematic export`
    ckpt = Path(checkpoint_path).resolve() if checkpoint_path else None
    run_dir = ckpt.parent.parent if ckpt is not None else None
    work_dir = run_dir.parent if run_dir is not None else None
    places: list[Path] = []
    if is_file_reference(value):
        if run_dir is not None:
            places.append(Path(os.path.normpath(run_dir / value["relative_path"])))
    elif value:
        recorded = Path(value)
        places.append(recorded)
        if work_dir is not None and len(recorded.parts) >= 3:  # <work>/<run>/checkpoints/<file>
            places.append(work_dir / recorded.parent.parent.name / "checkpoints" / recorded.name)
    if work_dir is not None:
        places += [work_dir / run / "checkpoints" / name for run in runs for name in ("best.pth", "last.pth")]
    existing = list(dict.fromkeys(p for p in places if p.is_file()))
    if is_file_reference(value):
        match = _same_content(value, existing) or _same_content(value, _work_checkpoints(work_dir, ckpt))
        if match is not None:
            return match
    if existing:
        if is_file_reference(value):
            log.warning(
                "%s holds another version of the recorded %s %s (trained further or replaced): using it",
                existing[0],
                what,
                describe_companion(value),
            )
        elif value and existing[0] != Path(value):
            log.warning("the recorded %s %s is missing: using %s", what, value, existing[0])
        return existing[0]
    tried = f" (tried {', '.join(map(str, places))})" if places else ""
    if not value:
        needs = "it records none"
    elif is_file_reference(value):
        needs = f"it needs {describe_companion(value)}, found neither there nor by content"
    else:
        needs = f"it records {value}, which does not exist"
    where = f" for {checkpoint_path}" if checkpoint_path else ""
    raise UserError(f"no {what}{where}: {needs}{tried}" + (f"; {hint}" if hint else ""))


def _same_content(reference: Mapping[str, Any], paths: Sequence[Path]) -> Path | None:
    for path in paths:
        try:
            size = path.stat().st_size
            if size == reference.get("size", size) and file_sha1(path) == reference["sha1"]:
                return path
        except OSError:
            continue
    return None


def _work_checkpoints(work_dir: Path | None, checkpoint: Path | None) -> list[Path]:
    """Every checkpoint of the runs of a work folder (and beside the checkpoint itself)."""
    found = list(checkpoint.parent.glob("*.pth")) if checkpoint is not None else []
    if work_dir is not None and work_dir.is_dir():
        found += sorted(work_dir.glob("*/checkpoints/*.pth"))
    return [p for p in dict.fromkeys(found) if p != checkpoint]


# ---------------------------------------------------------------------------------- exported models


def inference_checkpoint(
    checkpoint: Mapping[str, Any],
    models: Iterable[str] | None = None,
    config_sections: Iterable[str] = (),
) -> dict[str, Any]:
    """What generation reads of a training checkpoint, in the same layout: the inference weights (EMA
    when kept) of `models` (None: every model), the config sections the loaders read, the task state,
    the step and epoch — no optimizer, scheduler, RNG, EMA copy, data folder or other models."""
    config = checkpoint.get("config") or {}
    names = list(models) if models is not None else list(checkpoint.get("model") or {})
    return {
        "format_version": checkpoint.get("format_version", 1),
        "task": checkpoint["task"],
        "config": {name: config[name] for name in config_sections if name in config},
        "model": {name: inference_weights(dict(checkpoint), name) for name in names},
        "ema": {},
        "task_state": dict(checkpoint.get("task_state") or {}),
        "step": int(checkpoint.get("step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
    }


def is_export_file(path: str | Path) -> bool:
    """Whether `path` is a safetensors file (an exported model), not a torch checkpoint: a safetensors
    file starts with the 8-byte length of its JSON header, then "{"."""
    path = Path(path)
    if path.suffix in (EXPORT_SUFFIX, ".safetensors"):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def write_export(
    checkpoint: Mapping[str, Any], path: str | Path, info: Mapping[str, Any] | None = None
) -> Path:
    """Write an inference checkpoint (`inference_checkpoint`) as one exported model file: a safetensors
    file whose tensors are every tensor of the dict (named by their dotted place in it) and whose
    metadata holds the format name and version and a JSON skeleton of the rest, with a placeholder
    where each tensor goes. `info` (source, sizes, ...) is stored in the skeleton under "export"."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple[Any, ...], str] = {}
    body = dict(checkpoint)
    body["export"] = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, **dict(info or {})}
    skeleton = _encode(body, "", tensors, seen)
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": str(EXPORT_VERSION),
        "task": str(checkpoint.get("task")),
        "skeleton": json.dumps(skeleton, ensure_ascii=False, separators=(",", ":")),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # beside the target, then renamed over it: readers never see half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, default_file_mode())  # the mode a plain open() gives (save_file makes 0600 files)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_export(path: str | Path) -> dict[str, Any]:
    """An exported model file as the checkpoint dict it was written from (tensors from safetensors,
    the rest from JSON: reading it runs no code from the file). UserError naming the file when it is
    truncated, not an export, or of a format version this cinematic does not know."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            _check_export_metadata(path, metadata)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as err:
        raise UserError(
            f"{path}: not a readable exported model ({err}); the file may be truncated or damaged: "
            "copy or export it again"
        ) from None
    try:
        skeleton = json.loads(metadata["skeleton"])
        checkpoint = _decode(skeleton, tensors)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: damaged exported model ({type(err).__name__}: {err}); export it again"
        ) from None
    if not isinstance(checkpoint, dict) or "task" not in checkpoint:
        raise UserError(f"{path}: damaged exported model (no 'task' entry); export it again")
    return checkpoint


def _check_export_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    if metadata.get("format") != EXPORT_FORMAT or "skeleton" not in metadata:
        raise UserError(
            f"{path}: a safetensors file but not an exported cinematic model (no {EXPORT_FORMAT!r} "
            "metadata; plain weights hold no model settings or vocabularies): make one with "
            "`cinematic export --checkpoint CKPT --out model.cinematic`"
        )
    version = metadata.get("format_version", "")
    if not version.isdigit() or not 1 <= int(version) <= EXPORT_VERSION:
        newer = version.isdigit() and int(version) > EXPORT_VERSION
        raise UserError(
            f"{path}: exported model of unknown format version {version!r} (this cinematic reads version "
            f"{EXPORT_VERSION})"
            + ("; it was written by a newer cinematic: upgrade cinematic" if newer else "")
        )


def _encode(
    value: Any, where: str, tensors: dict[str, torch.Tensor], seen: dict[tuple[Any, ...], str]
) -> Any:
    """JSON for `value`, tensors moved into `tensors` (one copy per distinct storage view)."""
    if isinstance(value, torch.Tensor):
        key = (
            value.untyped_storage().data_ptr(),
            value.storage_offset(),
            tuple(value.shape),
            tuple(value.stride()),
            value.dtype,
            value.device,
        )
        if key not in seen:  # tied weights (an embedding shared with the output layer) are stored once
            name, n = where or "tensor", 1
            while name in tensors:
                n += 1
                name = f"{where}#{n}"
            tensors[name] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
            seen[key] = name
        return {_TENSOR: seen[key]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: _encode(v, f"{where}.{k}" if where else k, tensors, seen) for k, v in value.items()}
        return {
            _DICT: [
                [
                    _encode(k, where, tensors, seen),
                    _encode(v, f"{where}.{k}" if where else str(k), tensors, seen),
                ]
                for k, v in value.items()
            ]
        }
    if isinstance(value, torch.Size):
        return {_SIZE: list(value)}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{where}.{i}", tensors, seen) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}.{i}", tensors, seen) for i, v in enumerate(value)]
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, torch.dtype):
        return {_DTYPE: str(value).removeprefix("torch.")}
    raise UserError(f"cannot export {where or 'the checkpoint'}: a {type(value).__name__} value")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == _TENSOR:
            return tensors[inner]
        if tag == _TUPLE:
            return tuple(_decode(v, tensors) for v in inner)
        if tag == _DICT:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
        if tag == _SIZE:
            return torch.Size(inner)
        if tag == _BYTES:
            return base64.b64decode(inner)
        if tag == _DTYPE:
            dtype = getattr(torch, inner)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {inner!r}")
            return dtype
    return {k: _decode(v, tensors) for k, v in value.items()}
