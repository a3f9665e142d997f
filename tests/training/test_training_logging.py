"""TensorBoard scalars and media, W&B offline, progress bar vs plain log lines."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
from toy_tasks import make_task

from cinematic.errors import UserError
from cinematic.training.trainer import run_training

HAS_WANDB = importlib.util.find_spec("wandb") is not None


def test_tensorboard_holds_loss_lr_grad_norm_throughput_and_samples(toy_cfg, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = toy_cfg(max_steps=10, validate_every_steps=5)
    run_training(make_task("toy"), cfg, data_dir)
    tb_dir = f"{cfg.training.work_dir}/logs/tensorboard/toy"
    events = EventAccumulator(tb_dir, size_guidance={"scalars": 0, "images": 0, "audio": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "train/abs_err",
        "val/loss",
    }
    assert expected <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10]
    assert all(e.value > 0 for e in events.Scalars("train/samples_per_s"))
    assert "samples/tone" in events.Tags()["audio"]
    assert "samples/half" in events.Tags()["images"]
    assert any("samples/note" in tag for tag in events.Tags()["tensors"])  # text summaries are tensors


def test_two_phase_task_logs_each_phase(toy_cfg, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = toy_cfg(max_steps=5)
    run_training(make_task("toy_gan"), cfg, data_dir)
    events = EventAccumulator(f"{cfg.training.work_dir}/logs/tensorboard/toy_gan")
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_disc", "train/loss_gen", "train/lr_disc", "train/grad_norm_gen", "train/loss"} <= tags


@pytest.mark.skipif(HAS_WANDB, reason="wandb is installed")
def test_wandb_logger_without_the_package_says_how_to_install_it(toy_cfg, data_dir):
    cfg = toy_cfg(max_steps=2)
    cfg.logging.logger = "wandb"
    with pytest.raises(UserError, match=r"pip install 'cinematic\[wandb\]'"):
        run_training(make_task("toy"), cfg, data_dir)


@pytest.mark.skipif(not HAS_WANDB, reason="wandb (optional extra) is not installed")
def test_wandb_offline_writes_local_run_files(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = toy_cfg(max_steps=4)
    cfg.logging.logger = "wandb"
    run_training(make_task("toy"), cfg, data_dir)
    runs = list((Path(cfg.training.work_dir) / "logs" / "wandb").rglob("offline-run-*"))
    assert runs


def test_plain_log_lines_when_not_on_a_terminal(toy_cfg, data_dir, caplog):
    with caplog.at_level(logging.INFO, logger="cinematic.training"):
        run_training(make_task("toy"), toy_cfg(max_steps=10), data_dir)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert any(line.startswith("step 5/10  loss") and "samples/s" in line and "ETA" in line for line in lines)


def test_progress_bar_when_asked(toy_cfg, data_dir, capsys):
    cfg = toy_cfg(max_steps=6)
    cfg.logging.progress_bar = True
    run_training(make_task("toy"), cfg, data_dir)
    err = capsys.readouterr().err
    assert "6/6" in err and "loss" in err
