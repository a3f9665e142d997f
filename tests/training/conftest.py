"""Fixtures for the trainer tests: the toy tasks registered, and a tiny config writing under tmp_path."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import toy_tasks  # noqa: E402


@contextlib.contextmanager
def toy_tasks_registered() -> Iterator[None]:
    """The toy families known to the registry (and `Config.training_for`) for the duration of the block."""
    from cinematic import registry

    with registry.registered(*toy_tasks.families()):
        yield


@pytest.fixture(autouse=True)
def _toy_tasks_registered():
    with toy_tasks_registered():
        yield


def toy_overrides(work_dir: Path, **training) -> list[str]:
    """A small, fast toy run: 20 SGD-free AdamW steps, no AMP, EMA on, checkpoints every 4 steps."""
    values = {
        "work_dir": str(work_dir),
        "max_steps": 20,
        "batch_size": 4,
        "learning_rate": 0.01,
        "warmup_steps": 3,
        "amp": False,
        "ema_decay": 0.9,
        "checkpoint_every_steps": 4,
        "validate_every_steps": 10,
        "keep_last_k": 2,
        "gradient_clip_val": 1.0,
        **training,
    }
    sets = [f"training.{k}={'null' if v is None else v}" for k, v in values.items()]
    return [*sets, "data.num_workers=0", "logging.log_every_steps=5", "logging.progress_bar=false"]


@pytest.fixture
def toy_cfg(tmp_path):
    """Factory: toy_cfg(**training_keys) -> Config with work_dir under tmp_path."""
    from cinematic.registry import load_config

    def make(**training):
        return load_config(None, toy_overrides(tmp_path / "work", **training))

    return make


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    return folder
