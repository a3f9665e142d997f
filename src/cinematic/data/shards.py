"""Streaming shards of a task's training items, stored in litdata's chunked format (docs/streaming.md).

A shard folder (`cinematic data shard TASK DIR --out SHARDS`) holds:

    index.json              litdata's index: every chunk file, its size in bytes and item count
    <key>-<n>.bin           the chunks (litdata's binary format); <key> names the part that wrote them
    parts/<key>.json        one per part (a rank's block of records), written last: the part is done
    task_state.pt           the task's export_state() (vocabularies, statistics), torch.load(weights_only)
    cinematic_shards.json   the manifest, written last by rank 0: task, record counts (train then val),
                            per-record metadata, what the build skipped

A *record* is one item's data before any per-epoch randomness (a whole tokenized piece, a whole clip,
a packed block's songs): the task turns record i into training item i of epoch e with
`item_rng(seed, e, i)`, as from the raw files. Records are dicts of numpy arrays / tensors / numbers /
strings / None / JSON-able lists and dicts (tuples come back as lists), serialized here with `np.savez` (no pickle) and stored in litdata as one bytes field.

Reading: `ShardSource` opens a local folder or an object-store URL litdata supports (s3://, gs://,
azure://, ...) and gives random access to record i through `litdata.StreamingDataset` (chunks are
downloaded and cached on first use). The training order is not litdata's: it is cinematic's
`EpochSampler` over record indices (exact resume, per-rank shares), and the DataLoader's workers split
its batches. Before training every chunk listed in the index is checked (present, size as recorded):
a bad chunk is a `UserError` naming it, or with `skip_bad=True` its records are left out and reported.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.errors import UserError
from cinematic.utils import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "cinematic_shards.json"
STATE_FILE = "task_state.pt"
INDEX = "index.json"
PARTS = "parts"
CHUNK_BYTES = 1 << 26
"""Chunk size (64 MiB): a few reads per chunk from an object store, small enough to cache many."""
_CHUNK_NAME = re.compile(r"^[0-9a-f]{16}-\d+\.bin$")
_URL = re.compile(r"^(local:|[a-zA-Z][a-zA-Z0-9+.-]*://)")
"""A store URL (s3://, gs://, ...) or litdata's `local:/path` (a folder read through the cache, as a
remote one: a network file system)."""
CACHE_ENV = "CINEMATIC_SHARD_CACHE"
"""Where remote shards are cached: `<it>/<hash of the URL>/` (small files) and `.../chunks/`
(default ~/.cache/cinematic/shards)."""


# ------------------------------------------------------------------------------------------ records


def _publish(path: Path, data: bytes) -> None:
    """Write a shard folder's file atomically, readable by everyone (shards are shared)."""
    atomic_write(path, lambda handle: handle.write(data), mode=0o644)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as bytes (an .npz archive, no pickle). Keys keep their type: tensors come back as
    tensors, numpy arrays as arrays, Python numbers/strings as such, None as None, lists and dicts
    through JSON (tuples become lists)."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in record.items():
        if "/" in key:
            raise ValueError(f"record key {key!r} must not contain '/'")
        if value is None:
            arrays[f"z/{key}"] = np.zeros(0, dtype=np.int8)
        elif isinstance(value, torch.Tensor):
            arrays[f"t/{key}"] = value.detach().cpu().numpy()
        elif isinstance(value, np.ndarray):
            arrays[f"n/{key}"] = value
        elif isinstance(value, bool):
            arrays[f"b/{key}"] = np.asarray(value)
        elif isinstance(value, int | np.integer):
            arrays[f"i/{key}"] = np.asarray(int(value), dtype=np.int64)
        elif isinstance(value, float | np.floating):
            arrays[f"f/{key}"] = np.asarray(float(value), dtype=np.float64)
        elif isinstance(value, str):
            arrays[f"s/{key}"] = np.asarray(value)
        elif isinstance(value, dict | list | tuple):
            arrays[f"j/{key}"] = np.asarray(json.dumps(value, ensure_ascii=False))
        else:
            raise TypeError(f"record key {key!r}: cannot store a {type(value).__name__} in a shard")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_record(data: bytes | memoryview) -> dict[str, Any]:
    """The inverse of `encode_record`."""
    out: dict[str, Any] = {}
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as archive:
        for name in archive.files:
            kind, key = name.split("/", 1)
            value = archive[name]
            if kind == "z":
                out[key] = None
            elif kind == "t":
                out[key] = torch.from_numpy(value)
            elif kind == "n":
                out[key] = value
            elif kind == "b":
                out[key] = bool(value)
            elif kind == "i":
                out[key] = int(value)
            elif kind == "f":
                out[key] = float(value)
            elif kind == "j":
                out[key] = json.loads(str(value))
            else:
                out[key] = str(value)
    return out


def is_url(location: str | Path) -> bool:
    return bool(_URL.match(str(location)))


def normalize_location(location: str | Path) -> str:
    """A URL as given (`Path("s3://b/x")` would collapse it to "s3:/b/x": that is undone here)."""
    text = str(location)
    fixed = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*):/(?!/)", r"\1://", text)
    return fixed if fixed != text and not Path(text).exists() else text


def is_shard_source(location: str | Path) -> bool:
    """Whether `--data_dir` names a shard folder: an object-store URL, or a folder with a manifest."""
    location = normalize_location(location)
    return is_url(location) or (Path(location) / MANIFEST).is_file()


def rank_block(count: int, rank: int, world_size: int) -> range:
    """The contiguous block of `count` records rank `rank` of `world_size` writes."""
    return range(count * rank // world_size, count * (rank + 1) // world_size)


# ------------------------------------------------------------------------------------------ writing


def _part_done(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The part's record when it was finished earlier and every chunk it lists is intact."""
    marker = out_dir / PARTS / f"{key}.json"
    if not marker.is_file():
        return None
    try:
        part = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for chunk in part["chunks"]:
        path = out_dir / chunk["filename"]
        if not path.is_file() or path.stat().st_size != chunk["chunk_bytes"]:
            return None
    return part


def write_part(
    out_dir: Path,
    task: str,
    block: range,
    records: Iterable[Mapping[str, Any]],
    chunk_bytes: int = CHUNK_BYTES,
) -> dict[str, Any]:
    """Write one part (records `block` of the whole list) as chunks `<key>-<n>.bin`, then
    `parts/<key>.json`, the mark that the part is done. `<key>` hashes the task, the block's place and
    the bytes of its records, so a re-run that produces the same records finds the part done and keeps
    it, and a changed record makes a new part.

    The chunks are written in a private temporary folder, renamed into place one by one, and the mark
    comes last: a crash leaves no mark, so the part is redone by the next run (and the merge removes
    stray chunks), never read half-written."""
    from litdata.streaming.writer import BinaryWriter

    out_dir = Path(out_dir)
    tmp = out_dir / f".tmp-{block.start}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    digest = hashlib.sha1(f"{FORMAT_VERSION}|{task}|{block.start}|{block.stop}".encode())
    writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes)
    count = 0
    for count, record in enumerate(records, start=1):
        data = encode_record(record)
        digest.update(hashlib.sha1(data).digest())
        writer[count - 1] = {"record": data}
    key = digest.hexdigest()[:16]
    done = _part_done(out_dir, key)
    if done is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("records %d-%d: the same part is already written (%s), kept", block.start, block.stop, key)
        return done
    chunks: list[dict[str, Any]] = []
    config: dict[str, Any] | None = None
    if count:
        writer.done()
        for index_file in sorted(tmp.glob("*index.json")):
            written = json.loads(index_file.read_text(encoding="utf-8"))
            config = written["config"]
            chunks += written["chunks"]
    for n, chunk in enumerate(chunks):
        name = f"{key}-{n}.bin"
        os.replace(tmp / chunk["filename"], out_dir / name)
        chunk["filename"] = name
    part = {"key": key, "count": count, "chunks": chunks, "config": config}
    _publish(out_dir / PARTS / f"{key}.json", json.dumps(part).encode("utf-8"))
    shutil.rmtree(tmp, ignore_errors=True)
    return part


def merge_parts(out_dir: Path, keys: Sequence[str], manifest: dict[str, Any], state: Any) -> None:
    """Rank 0, after every part is done: litdata's index.json over the parts in order, the task state
    and the manifest (last: a folder with a manifest is complete). Chunks of no listed part (an older
    run's, a crashed run's) are removed."""
    out_dir = Path(out_dir)
    parts = [json.loads((out_dir / PARTS / f"{key}.json").read_text(encoding="utf-8")) for key in keys]
    chunks = [chunk for part in parts for chunk in part["chunks"]]
    config = next((part["config"] for part in parts if part["config"] is not None), None)
    total = sum(part["count"] for part in parts)
    if total != manifest["train_count"] + manifest["val_count"]:
        raise RuntimeError(f"parts hold {total} records, the manifest counts {manifest}")
    (out_dir / MANIFEST).unlink(missing_ok=True)  # not complete while the rest changes
    _publish(out_dir / INDEX, json.dumps({"chunks": chunks, "config": config}).encode("utf-8"))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _publish(out_dir / STATE_FILE, buffer.getvalue())
    listed = {chunk["filename"] for chunk in chunks}
    for path in out_dir.iterdir():
        if _CHUNK_NAME.match(path.name) and path.name not in listed:
            path.unlink()
    for path in (out_dir / PARTS).iterdir():
        if path.suffix == ".json" and path.stem not in keys:
            path.unlink()
    manifest = {**manifest, "format_version": FORMAT_VERSION, "parts": list(keys)}
    _publish(out_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False).encode("utf-8"))


# ------------------------------------------------------------------------------------------ reading


def read_manifest(location: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder or URL (a UserError when there is none)."""
    location = normalize_location(location)
    local = _download_small_files(location, None) if is_url(location) else Path(location)
    path = local / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{location} has no readable {MANIFEST} ({exc}): not a shard folder, or `cinematic data shard` "
            "did not finish writing it (run it again: finished parts are kept)"
        ) from exc


@dataclass
class BadShard:
    name: str
    reason: str
    records: range


@dataclass
class ShardSource:
    """A shard folder or URL opened for training: its manifest, task state and records by index."""

    location: str
    manifest: dict[str, Any]
    state: Any
    chunks: list[dict[str, Any]]
    bad: list[BadShard] = field(default_factory=list)
    chunk_cache: str | None = None
    """Where litdata keeps downloaded chunks of a remote source (None: a local folder, read in place)."""
    _dataset: Any = None
    _memo: tuple[int, dict[str, Any]] | None = None
    _pid: int = 0

    @classmethod
    def open(cls, location: str | Path, skip_bad: bool = False, cache_dir: str | None = None) -> ShardSource:
        """Read the manifest, index and task state, and check every chunk (see the module docstring)."""
        location = normalize_location(location)
        remote = is_url(location)
        if remote:
            local = _download_small_files(location, cache_dir)
            chunk_cache: str | None = str(local / "chunks")
        else:
            chunk_cache = None
            local = Path(location)
            if not local.is_dir():
                raise UserError(f"shard folder not found: {location}")
        manifest_path = local / MANIFEST
        if not manifest_path.is_file():
            raise UserError(
                f"{location} has no {MANIFEST}: not a shard folder, or `cinematic data shard` did not "
                "finish writing it (run it again: finished parts are kept)"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            index = json.loads((local / INDEX).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(
                f"{location}: the shard index cannot be read ({exc}); write the shards again"
            ) from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{location}: shard format {manifest.get('format_version')} is not the one this version "
                f"reads ({FORMAT_VERSION}); write the shards again with this version"
            )
        try:
            state = torch.load(local / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or missing file: torch raises several kinds
            raise UserError(
                f"{location}: {STATE_FILE} cannot be read ({exc}); write the shards again"
            ) from exc
        source = cls(location, manifest, state, index["chunks"], chunk_cache=chunk_cache)
        if not remote:
            source._check_chunks(local, skip_bad)
        return source

    def _check_chunks(self, local: Path, skip_bad: bool) -> None:
        start = 0
        for chunk in self.chunks:
            records = range(start, start + chunk["chunk_size"])
            start = records.stop
            path = local / chunk["filename"]
            if not path.is_file():
                reason = "missing"
            elif (size := path.stat().st_size) != chunk["chunk_bytes"]:
                reason = (
                    f"{size} bytes where the index records {chunk['chunk_bytes']} (truncated or rewritten)"
                )
            else:
                continue
            if not skip_bad:
                raise UserError(
                    f"bad shard {path}: {reason}. Write the shards again (`cinematic data shard` redoes "
                    "only what is missing), or train with --skip_bad_shards to leave its "
                    f"{len(records)} item(s) out and list them in <run>/skipped_files.json"
                )
            log.warning("skipping shard %s (%s): %d item(s) left out", path, reason, len(records))
            self.bad.append(BadShard(str(path), reason, records))

    # --------------------------------------------------------------------------------- records

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    def _usable(self, ids: range) -> list[int]:
        if not self.bad:
            return list(ids)
        dropped = set().union(*(set(b.records) for b in self.bad))
        return [i for i in ids if i not in dropped]

    @property
    def train_ids(self) -> list[int]:
        """Record ids of the training items (records 0 … train_count − 1, less bad shards')."""
        return self._usable(range(self.manifest["train_count"]))

    @property
    def val_ids(self) -> list[int]:
        start = self.manifest["train_count"]
        return self._usable(range(start, start + self.manifest["val_count"]))

    def meta(self, name: str, ids: Sequence[int]) -> list[Any]:
        """Per-record metadata the task stored at shard time (`manifest["meta"][name]`), for `ids`."""
        values = self.manifest["meta"][name]
        return [values[i] for i in ids]

    def record(self, index: int) -> dict[str, Any]:
        """Record `index` (the last one read is kept: a task reading one record twice reads it once)."""
        if self._memo is not None and self._memo[0] == index:
            return self._memo[1]
        if self._dataset is None or self._pid != os.getpid():  # a forked loader worker opens its own
            from litdata import StreamingDataset

            self._dataset = StreamingDataset(self.location, cache_dir=self.chunk_cache)
            self._pid = os.getpid()
        record = decode_record(self._dataset[index]["record"])
        self._memo = (index, record)
        return record

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own reader
        return {**self.__dict__, "_dataset": None, "_memo": None}


def _download_small_files(url: str, cache_dir: str | None) -> Path:
    """The manifest, index and task state of a remote shard folder, copied into a local cache folder
    (litdata's downloader for the URL's store)."""
    from litdata.streaming.downloader import get_downloader

    root = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cinematic" / "shards"
    local = Path(root) / hashlib.sha1(url.encode()).hexdigest()[:16]
    local.mkdir(parents=True, exist_ok=True)
    downloader = get_downloader(url, str(local), [])
    for name in (MANIFEST, INDEX, STATE_FILE):
        target = local / name
        target.unlink(missing_ok=True)
        try:
            downloader.download_file(f"{url.rstrip('/')}/{name}", str(target))
        except Exception as exc:  # the store's client raises its own errors
            raise UserError(f"cannot read {url.rstrip('/')}/{name}: {exc}") from exc
    return local


class Records(Sequence):
    """Records `ids` of a source as a lazy sequence (`get` picks or transforms a field)."""

    def __init__(
        self, source: ShardSource, ids: Sequence[int], get: Callable[[dict[str, Any]], Any] | None = None
    ) -> None:
        self.source, self.ids, self.get = source, list(ids), get

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        record = self.source.record(self.ids[index])
        return record if self.get is None else self.get(record)


class RecordDataset(torch.utils.data.Dataset):
    """Items stored whole (a task whose items have no per-epoch randomness; validation sets)."""

    def __init__(self, records: Records) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]
