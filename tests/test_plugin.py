"""A model family from outside cinematic: the example package in examples/cinematic-toy (one model file,
one task file, one entry point) is made importable with its entry point, and the CLI trains, resumes,
configures and generates with it — nothing in cinematic is edited for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


EXAMPLE = REPO_ROOT / "examples" / "cinematic-toy"
TEXT = "The ship sails at dawn; the drums roll, the horns call, and the choir answers.\n"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A folder on PYTHONPATH holding the package and the dist-info `pip install` would write for it."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE / "cinematic_toy", site / "cinematic_toy")
    info = site / "cinematic_toy-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cinematic-toy\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[cinematic.tasks]\ntoy = cinematic_toy.task:FAMILY\n")
    return site


def cinematic(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "cinematic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plugin_family_trains_resumes_configures_and_generates(plugin_site, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text(TEXT * 40, encoding="utf-8")
    common = ["--data_dir", str(data), "--work_dir", str(tmp_path / "work"), "--set", "training.batch_size=4",
              "--set", "training.amp=false", "--set", "data.num_workers=0", "--set", "toy_model.dim=8",
              "--set", "training.learning_rate=0.05", "--set", "training.scheduler=constant", "--set", "training.warmup_steps=0", "--set", "training.ema_decay=null",
              "--set", "training.checkpoint_every_steps=5", "--set", "training.validate_every_steps=5"]  # fmt: skip

    first = cinematic(plugin_site, tmp_path, "train", "toy", *common, "--set", "training.max_steps=10")
    assert first.returncode == 0, first.stderr
    ckpt_dir = tmp_path / "work" / "toy" / "checkpoints"
    assert torch.load(ckpt_dir / "last.pth", weights_only=True)["step"] == 10

    resumed = cinematic(
        plugin_site, tmp_path, "train", "toy", *common, "--set", "training.max_steps=20", "--resume", "auto"
    )
    assert resumed.returncode == 0, resumed.stderr
    last = torch.load(ckpt_dir / "last.pth", weights_only=True)
    assert last["step"] == 20 and last["task"] == "toy"
    assert last["config"]["toy_model"]["dim"] == 8

    shown = cinematic(plugin_site, tmp_path, "config", "show", "--set", "toy_model.dim=5")
    assert shown.returncode == 0, shown.stderr
    assert "toy_model:\n  dim: 5" in shown.stdout and "music_model:" in shown.stdout

    typo = cinematic(plugin_site, tmp_path, "config", "show", "--set", "toy_model.dimm=5")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "toy_model.dimm: unknown key; did you mean toy_model.dim?" in typo.stderr

    out = tmp_path / "out.txt"
    generated = cinematic(plugin_site, tmp_path, "generate", "toy", "--checkpoint", str(ckpt_dir / "best.pth"),
                          "--length", "80", "--seed", "1", "--out", str(out))  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    text = out.read_text(encoding="utf-8")
    assert len(text) >= 40
    # trained on one sentence: the bigram model writes mostly its letters
    assert sum(ch in set(TEXT) for ch in text) / len(text) > 0.9


def test_plugin_family_is_listed_and_loadable_in_process(plugin_site, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(plugin_site))
    from cinematic import registry

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_families", {})
    try:
        assert "toy" in registry.trainable() and "music" in registry.trainable()
        assert registry.config_class().task_sections["toy"] == "toy_model"
    finally:
        registry._loaded = False
        registry._families = {}
        monkeypatch.undo()
        registry.config_class()  # the built-in families again, for the tests after this one
