"""Shared fixtures. Expensive ones (the demo data set) are built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Install the root config class with every built-in family's section, so `cinematic.configs.load_config`
# (what the tests call) knows music_model, voice_model, ... as the CLI does through the registry.
from cinematic import registry  # noqa: E402

registry.config_class()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one intra-op thread for a module of tiny models (`pytestmark = usefixtures("one_thread")`):
    one thread is as fast, and it avoids OpenMP spin-waiting on a busy machine. Not autouse: the trainer
    tests compare against arithmetic done with the session's two threads. Session fixtures start before
    it, so those that train set the thread count themselves."""
    from cinematic.utils import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def tiny_config():
    """A fresh copy of the tiny preset (configs/tiny.yaml), safe to modify."""
    from cinematic.configs import load_config

    return load_config("tiny")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """`cinematic data demo` output (music/, voice/, lyrics/), made once per session. Do not modify it:
    copy what a test needs to change."""
    from cinematic.data.demo import write_demo_data

    root = tmp_path_factory.mktemp("demo") / "data"
    write_demo_data(root, seed=0)
    return root
