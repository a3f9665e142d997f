"""The feature cache that training fills and `cinematic data preprocess FAMILY DIR` fills ahead of it.

Features of one file are stored as a `.npz` under `<work_dir>/cache/features/`, keyed by
sha1(content hash of the file, feature kind and settings, extractor version): editing a file or
changing the mel settings gives a new key, renaming or moving a file reuses the old one, and a second
run only checks hashes. Each task computes its features through this store (voice: mels, pitch, energy,
d-vectors per utterance; the music routes cache their tokens and codes beside it), and
`cinematic data preprocess` runs the very same build a training run starts with, so what it writes is
what training reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinematic.configs.model_config import MelConfig
from cinematic.utils import atomic_write_bytes

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
"""Bump when an extractor changes its output, so old cache entries are not reused."""


def feature_key(content_hash: str, kind: str, mel: MelConfig | None, extra: dict | None = None) -> str:
    """Cache key of one file's features: content, feature settings and extractor version."""
    settings = {
        "kind": kind,
        "version": FEATURE_VERSION,
        "mel": mel.model_dump() if mel else None,
        **(extra or {}),
    }
    return hashlib.sha1((content_hash + json.dumps(settings, sort_keys=True)).encode()).hexdigest()


@dataclass
class FeatureCache:
    """Content-addressed store of feature files under `root` (e.g. <work_dir>/cache/features)."""

    root: Path

    def path_for(self, key: str) -> Path:
        return Path(self.root) / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except Exception:  # a damaged entry (disk full, killed writer) is recomputed
            log.warning("recomputing damaged cache entry %s", path)
            return None

    def store(self, key: str, features: dict[str, np.ndarray]) -> Path:
        buffer = io.BytesIO()
        np.savez(buffer, **features)
        path = self.path_for(key)
        atomic_write_bytes(path, buffer.getvalue())
        return path
