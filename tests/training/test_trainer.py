"""End-to-end behaviour of `run_training` on the toy tasks (single process, in-process)."""

from __future__ import annotations

import pytest
import torch
from toy_tasks import make_task

from cinematic.errors import UserError
from cinematic.training.checkpointing import export_safetensors, model_state_dict
from cinematic.training.trainer import run_training


def test_run_writes_checkpoints_config_and_metrics(toy_cfg, data_dir):
    cfg = toy_cfg(validate_at_start=True)
    result = run_training(make_task("toy"), cfg, data_dir)
    assert result.step == 20
    assert result.run_dir.name == "toy" and result.run_dir.parent.name == "work"
    assert (result.run_dir / "config.yaml").is_file()
    names = sorted(p.name for p in (result.run_dir / "checkpoints").glob("*.pth"))
    # keep_last_k=2 of step_4..step_20, plus last and best
    assert names == ["best.pth", "last.pth", "step_16.pth", "step_20.pth"]
    assert result.best_checkpoint is not None
    assert result.metrics_after["val/loss"] < result.metrics_before["val/loss"]

    for path in (result.run_dir / "checkpoints").glob("*.pth"):  # every file, safely loadable
        assert torch.load(path, map_location="cpu", weights_only=True)["task"] == "toy"
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["format_version"] == 1 and ckpt["task"] == "toy" and ckpt["step"] == 20
    assert ckpt["config"]["training"]["max_steps"] == 20
    assert ckpt["data_dir"] == str(data_dir)
    assert ckpt["task_state"] == {"input_dim": 4, "labels": ["a", "b"]}
    assert set(ckpt["model"]) == {"net"} and set(ckpt["ema"]) == {"net"}
    assert set(ckpt["optimizers"]) == {"main"} and set(ckpt["schedulers"]) == {"main"}
    assert len(ckpt["rng"]) == 1
    # EMA weights differ from the live ones, and the inference helper prefers them
    live, ema = ckpt["model"]["net"]["0.weight"], ckpt["ema"]["net"]["0.weight"]
    assert not torch.equal(live, ema)
    assert torch.equal(model_state_dict(ckpt, "net")["0.weight"], ema)
    assert torch.equal(model_state_dict(ckpt, "net", prefer_ema=False)["0.weight"], live)


def test_dataset_epochs_and_data_order(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_SIZE", "16")  # 4 batches per epoch: 20 steps = 5 epochs
    from cinematic.training.trainer import Trainer

    task = make_task("toy")
    trainer = Trainer(task, toy_cfg(), data_dir)
    trainer.fit()
    assert task.train_set.epochs == [0, 1, 2, 3, 4]
    assert trainer.state.epoch == 4 and trainer.state.batch_in_epoch == 4


def test_loader_workers_see_the_epoch_set_on_the_dataset(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_SIZE", "8")  # 2 steps per epoch: 6 steps = epochs 0, 1, 2
    from cinematic.training.trainer import Trainer

    cfg = toy_cfg(max_steps=6)
    cfg.data.num_workers = 1
    task = make_task("toy")
    Trainer(task, cfg, data_dir).fit()
    assert task.seen_epochs == {0, 1, 2}


def test_keep_last_k_zero_writes_no_periodic_files(toy_cfg, data_dir):
    result = run_training(make_task("toy"), toy_cfg(max_steps=8, keep_last_k=0), data_dir)
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["best.pth", "last.pth"]
    assert torch.load(result.last_checkpoint, weights_only=True)["step"] == 8


def test_fresh_run_refuses_to_overwrite_a_used_folder(toy_cfg, data_dir):
    run_training(make_task("toy"), toy_cfg(max_steps=4), data_dir)
    with pytest.raises(UserError, match="--resume auto"):
        run_training(make_task("toy"), toy_cfg(max_steps=4), data_dir)


def test_export_safetensors_holds_ema_weights(toy_cfg, data_dir, tmp_path):
    from safetensors.torch import load_file

    result = run_training(make_task("toy"), toy_cfg(max_steps=4), data_dir)
    out = export_safetensors(result.last_checkpoint, tmp_path / "toy.safetensors")
    tensors = load_file(out)
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    assert torch.equal(tensors["net.0.weight"], ckpt["ema"]["net"]["0.weight"])


def test_to_device_moves_nested_tensors_and_keeps_other_values():
    from dataclasses import dataclass

    from cinematic.training.trainer import to_device

    @dataclass
    class Batch:
        mel: torch.Tensor
        names: list

    moved = to_device(
        {"a": [torch.ones(1), (torch.zeros(2), "x")], "b": Batch(torch.ones(3), ["n"])}, torch.device("meta")
    )
    assert moved["a"][0].device.type == "meta" and moved["a"][1][0].device.type == "meta"
    assert moved["a"][1][1] == "x" and moved["b"].mel.device.type == "meta" and moved["b"].names == ["n"]
