"""Exact resume, atomic checkpoints, `--resume auto` / `--resume PATH`, compatibility checks."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HERE, toy_overrides, toy_tasks_registered
from toy_tasks import make_task

from cinematic.configs import load_config
from cinematic.errors import UserError
from cinematic.training.trainer import run_training

RUN_SPECIFIC = {"config", "data_dir"}  # the run folder name differs; every tensor must not


def assert_same_tensors(a, b, path="checkpoint"):
    """Bitwise equality of every tensor and plain value in two checkpoint trees."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            if path == "checkpoint" and key in RUN_SPECIFIC:
                continue
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


GAN_TRAINING = {"keep_last_k": 10, "gradient_clip_val": 1.0, "scheduler": "cosine_warmup", "ema_decay": 0.9}


@pytest.fixture(scope="module")
def straight_gan(tmp_path_factory):
    """20 steps of the GAN toy task straight through (shared by the SIGKILL tests)."""
    root = tmp_path_factory.mktemp("straight_gan")
    with toy_tasks_registered():
        cfg = load_config(None, toy_overrides(root / "work", **GAN_TRAINING))
        (root / "data").mkdir()
        result = run_training(make_task("toy_gan"), cfg, root / "data")
    return load(result.last_checkpoint)


def run_toy_subprocess(
    tmp_path: Path, env_extra: dict[str, str], resume: str | None = None
) -> subprocess.CompletedProcess:
    cfg = load_config(None, toy_overrides(tmp_path / "work", **GAN_TRAINING))
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(cfg.to_yaml())
    (tmp_path / "data").mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        str(HERE / "toy_tasks.py"),
        "run",
        "--task",
        "toy_gan",
        "--config",
        str(cfg_path),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    if resume:
        cmd += ["--resume", resume]
    env = {**os.environ, **env_extra, "PYTHONPATH": str(HERE)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_resume_from_mid_epoch_checkpoint_is_bitwise_exact(toy_cfg, data_dir):
    # 24 items, batch 2, 2 micro-batches per step: 6 steps per epoch, step 8 is inside epoch 1.
    keys = {"batch_size": 2, "gradient_accumulation_steps": 2, "keep_last_k": 10, "run_name": "straight"}
    straight = run_training(make_task("toy"), toy_cfg(**keys), data_dir)
    middle = load(straight.run_dir / "checkpoints" / "step_8.pth")
    assert (middle["epoch"], middle["batch_in_epoch"]) == (1, 4)

    resumed = run_training(
        make_task("toy"),
        toy_cfg(**{**keys, "run_name": "resumed"}),
        data_dir,
        resume=str(straight.run_dir / "checkpoints" / "step_8.pth"),
    )
    assert resumed.step == 20
    assert_same_tensors(load(straight.last_checkpoint), load(resumed.last_checkpoint))


def test_sigkill_after_checkpoint_then_resume_is_bitwise_exact(tmp_path, straight_gan):
    # The process kills itself as step 9 starts, i.e. right after the step-8 checkpoint (mid-epoch 1).
    killed = run_toy_subprocess(tmp_path, {"TOY_KILL_AT": "9"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt_dir = tmp_path / "work" / "toy_gan" / "checkpoints"
    assert load(ckpt_dir / "last.pth")["step"] == 8

    cfg = load_config(tmp_path / "cfg.yaml")
    result = run_training(make_task("toy_gan"), cfg, tmp_path / "data", resume="auto")
    assert result.step == 20
    assert_same_tensors(straight_gan, load(result.last_checkpoint))


def test_save_killed_before_rename_keeps_previous_last_and_resume_auto_continues(tmp_path, straight_gan):
    # .pth renames: step_4 (1), last (2), step_8 (3), last (4): die while last.pth is being replaced.
    killed = run_toy_subprocess(tmp_path, {"TOY_KILL_ON_REPLACE": "4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt_dir = tmp_path / "work" / "toy_gan" / "checkpoints"
    assert load(ckpt_dir / "last.pth")["step"] == 4  # the previous last.pth, intact
    assert list(ckpt_dir.glob(".last.pth.*.tmp")), "the interrupted save leaves only a temporary file"

    cfg = load_config(tmp_path / "cfg.yaml")
    result = run_training(make_task("toy_gan"), cfg, tmp_path / "data", resume="auto")
    assert not list(ckpt_dir.glob("*.tmp"))
    assert_same_tensors(straight_gan, load(result.last_checkpoint))


def test_resume_auto_skips_truncated_files(toy_cfg, data_dir, caplog):
    first = run_training(
        make_task("toy"), toy_cfg(keep_last_k=3), data_dir
    )  # keeps step_12, step_16, step_20
    reference = load(first.last_checkpoint)
    ckpt_dir = first.run_dir / "checkpoints"
    for name in ("last.pth", "step_20.pth"):
        data = (ckpt_dir / name).read_bytes()
        (ckpt_dir / name).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        result = run_training(make_task("toy"), toy_cfg(keep_last_k=3), data_dir, resume="auto")
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert any("last.pth" in m for m in skipped) and any("step_20.pth" in m for m in skipped)
    assert_same_tensors(reference, load(result.last_checkpoint))


def test_resume_auto_without_checkpoints_starts_fresh(toy_cfg, data_dir):
    assert run_training(make_task("toy"), toy_cfg(max_steps=2), data_dir, resume="auto").step == 2


def test_resume_refuses_a_different_model_config(toy_cfg, data_dir):
    first = run_training(make_task("toy"), toy_cfg(max_steps=2), data_dir)
    cfg = toy_cfg(max_steps=4)
    cfg.toy_model.hidden = 3
    with pytest.raises(UserError, match=r"toy_model\.hidden: 8 != 3"):
        run_training(make_task("toy"), cfg, data_dir, resume=str(first.last_checkpoint))


def test_resume_missing_path_names_existing_checkpoints(toy_cfg, data_dir):
    first = run_training(make_task("toy"), toy_cfg(max_steps=4), data_dir)
    with pytest.raises(UserError, match="checkpoints there: .*last.pth"):
        run_training(
            make_task("toy"),
            toy_cfg(max_steps=4),
            data_dir,
            resume=str(first.run_dir / "checkpoints" / "nope.pth"),
        )


def test_resume_path_alone_restores_config_and_data_dir(toy_cfg, data_dir, tmp_path, monkeypatch):
    from cinematic import registry
    from cinematic.launch import resolve_run_config

    first = run_training(make_task("toy"), toy_cfg(max_steps=4, learning_rate=0.02), data_dir)
    moved = tmp_path / "elsewhere.pth"
    shutil.copy(first.last_checkpoint, moved)
    monkeypatch.chdir(tmp_path)  # no ./config.yaml, no ./data/toy here
    args = argparse.Namespace(
        task="toy",
        config=None,
        data_dir=None,
        resume=str(moved),
        overrides=["training.max_steps=6", "training.run_name=continued"],
        work_dir=None,
    )
    cfg, resolved_dir, _ = resolve_run_config(args, registry.get("toy"))
    assert resolved_dir == data_dir
    assert cfg.training.learning_rate == 0.02 and cfg.training.work_dir == str(tmp_path / "work")
    result = run_training(make_task("toy"), cfg, resolved_dir, resume=str(moved))
    assert result.step == 6 and result.run_dir.name == "continued"


def test_resume_auto_without_config_takes_it_from_the_run_folder(toy_cfg, data_dir, tmp_path, monkeypatch):
    from cinematic import registry
    from cinematic.launch import resolve_run_config

    first = run_training(make_task("toy"), toy_cfg(max_steps=4, learning_rate=0.03), data_dir)
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    args = argparse.Namespace(
        task="toy",
        config=None,
        data_dir=None,
        resume="auto",
        overrides=["training.max_steps=6"],
        work_dir=str(first.run_dir.parent),
    )
    cfg, resolved_dir, _ = resolve_run_config(args, registry.get("toy"))
    assert resolved_dir == data_dir and cfg.training.learning_rate == 0.03
    assert run_training(make_task("toy"), cfg, resolved_dir, resume="auto").step == 6
