"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A random stream that depends only on (seed, epoch, item): datasets use it for random crops and
    augmentation, so a resumed run draws exactly what an uninterrupted one would, whatever the workers."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index])


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on `count` torch intra-op threads, then restore the previous setting. Tiny or
    matrix-vector sized work (k-means steps, one decoded token, tiny test models) gains nothing from a
    second thread, and on a busy CPU OpenMP threads waiting for each other made it up to 20× slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`:
    readers see the old content or the new one, never a half-written file. `mode` sets the file's
    permissions (mkstemp makes 0600 files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """The permissions a plain `open()` gives a new file under the process umask (0o666 & ~umask): pass it
    to `atomic_write`, whose temporary file is created 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a half-written file."""
    atomic_write(path, lambda handle: handle.write(data))


def file_sha1(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
