"""NaN guard, AMP policy, early stopping."""

from __future__ import annotations

import logging

import pytest
import torch
from toy_tasks import make_task

from cinematic.errors import UserError
from cinematic.training import runtime as runtime_module
from cinematic.training.trainer import Trainer, resolve_amp, run_training


def weights(path):
    return torch.load(path, weights_only=True)["model"]["net"]


def test_nan_step_is_skipped_and_counted(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_NAN_AT", "5")
    result = run_training(
        make_task("toy"), toy_cfg(max_steps=6, checkpoint_every_steps=1, keep_last_k=10), data_dir
    )
    ckpt_dir = result.run_dir / "checkpoints"
    w4, w5, w6 = (weights(ckpt_dir / f"step_{n}.pth") for n in (4, 5, 6))
    assert all(torch.equal(w4[k], w5[k]) for k in w4)  # step 5 changed nothing
    assert not all(torch.equal(w5[k], w6[k]) for k in w5)  # training went on
    skips = torch.load(ckpt_dir / "step_6.pth", weights_only=True)["nan_skips"]
    assert skips == {"consecutive": 0, "total": 1}


def test_consecutive_nans_stop_the_run_with_a_message(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_NAN_AT", "3,4,5")
    with pytest.raises(UserError, match=r"stopped at step 5: 3 consecutive .*learning_rate"):
        run_training(make_task("toy"), toy_cfg(max_nan_skips=3), data_dir)


def test_amp_true_on_a_cpu_without_native_bf16_falls_back_to_fp32(monkeypatch, caplog):
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_amp(True, torch.device("cpu")) is None
    assert len(caplog.records) == 1 and "fp32" in caplog.records[0].getMessage()
    assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_amp(False, torch.device("cpu")) is None
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_amp(True, torch.device("cpu")) == torch.bfloat16


def test_forced_bf16_autocasts_and_the_loss_on_a_fixed_batch_goes_down(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_SIZE", "4")  # one batch: every step sees the same 4 items
    monkeypatch.setenv("TOY_NOISE", "0")
    cfg = toy_cfg(
        amp="bf16", max_steps=15, ema_decay=None, scheduler="constant", warmup_steps=0, learning_rate=0.05
    )
    task = make_task("toy")
    dtypes, losses = [], []
    step = task.training_step

    def recording_step(models, batch, phase, scratch):
        out = step(models, batch, phase, scratch)
        dtypes.append(models["net"][0](batch["x"]).dtype)
        losses.append(float(out.loss.detach()))
        return out

    task.training_step = recording_step
    Trainer(task, cfg, data_dir).fit()
    assert set(dtypes) == {torch.bfloat16}
    assert losses[-1] < 0.5 * losses[0]


def test_fp16_uses_a_grad_scaler_whose_state_is_saved(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_NAN_AT", "2")  # a NaN-guard skip must leave the scaler usable
    result = run_training(make_task("toy"), toy_cfg(amp="fp16", max_steps=4), data_dir)
    scalers = torch.load(result.last_checkpoint, weights_only=True)["scalers"]
    assert set(scalers) == {"main"} and scalers["main"]["scale"] > 0


def test_early_stopping_when_the_metric_stops_improving(toy_cfg, data_dir):
    # A learning rate too small to change val/loss: every validation after the first is no better.
    cfg = toy_cfg(learning_rate=1e-12, validate_every_steps=2, early_stopping_patience=2, ema_decay=None)
    result = run_training(make_task("toy"), cfg, data_dir)
    assert result.step == 6  # validations at 2 (best), 4 and 6 (no improvement: stop)
    assert torch.load(result.last_checkpoint, weights_only=True)["step"] == 6
