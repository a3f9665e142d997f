"""The trainer's CUDA paths, on a GPU (skipped without one): no host synchronisation inside a step,
the NaN guard read a step late through pinned memory still skipping exactly, the AMP dtype of this
GPU, TF32 and cudnn.benchmark. Run: `.venv/bin/python -m pytest tests/training/test_trainer_cuda.py`."""

from __future__ import annotations

import pytest
import torch
from test_trainer_gpu_paths import QUIET, Regression
from toy_tasks import make_task

from cinematic.training.trainer import Trainer, resolve_amp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_step_never_waits_for_the_gpu(toy_cfg, data_dir, monkeypatch):
    cfg = toy_cfg(max_steps=12, **QUIET)
    cfg.logging.log_every_steps = 1000
    trainer = Trainer(Regression(), cfg, data_dir)
    assert trainer.env.device.type == "cuda" and trainer.flag_lag == 1
    real_step = trainer.train_step
    steps = [0]

    def strict_step(group):
        steps[0] += 1
        if steps[0] <= 2:  # warm-up: lazy initialisation may sync once
            return real_step(group)
        torch.cuda.set_sync_debug_mode("error")  # an implicit sync (item, bool, blocking copy) raises
        try:
            return real_step(group)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(trainer, "train_step", strict_step)
    trainer.fit()
    assert trainer.state.step == 12


def test_nan_steps_are_skipped_exactly_with_the_late_read(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_NAN_AT", "5")
    trainer = Trainer(
        make_task("toy"), toy_cfg(max_steps=7, checkpoint_every_steps=1, keep_last_k=10), data_dir
    )
    assert trainer.flag_lag == 1
    trainer.fit()
    ckpt = trainer.run_dir / "checkpoints"
    saved = {n: torch.load(ckpt / f"step_{n}.pth", weights_only=True) for n in (4, 5, 6)}
    for part in ("model", "ema"):
        assert all(torch.equal(value, saved[5][part]["net"][k]) for k, value in saved[4][part]["net"].items())
    assert saved[5]["nan_skips"] == {"consecutive": 1, "total": 1}
    assert saved[6]["nan_skips"] == {"consecutive": 0, "total": 1}
    state = saved[6]["optimizers"]["main"]["state"]
    assert all(float(values["step"]) == 5 for values in state.values())  # the skipped step is not counted


def test_amp_tf32_and_cudnn_benchmark_on_this_gpu(toy_cfg, data_dir, monkeypatch):
    major, _ = torch.cuda.get_device_capability()
    assert resolve_amp(True, torch.device("cuda")) == (torch.bfloat16 if major >= 8 else torch.float16)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    trainer = Trainer(make_task("toy"), toy_cfg(max_steps=4, **QUIET), data_dir)
    assert torch.backends.cuda.matmul.allow_tf32
    trainer.fit()
    assert torch.backends.cudnn.benchmark  # the toy's batches all have one shape
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    Trainer(
        make_task("toy"), toy_cfg(max_steps=4, deterministic=True, run_name="det", **QUIET), data_dir
    ).fit()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
