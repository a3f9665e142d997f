"""The checkpoint as stateful parts (`cinematic.training.checkpoint`): the format-1 file layout is kept
(the key tree below was recorded from checkpoints written before the parts existed), a checkpoint laid
out by hand in that format restores every part, and the manager's own rules."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from toy_tasks import make_task

from cinematic.errors import UserError
from cinematic.training import checkpointing as ckpt_io
from cinematic.training.checkpoint import CheckpointManager, check_compatible
from cinematic.training.distributed import DistEnv
from cinematic.training.optimizers import build_optimizer, build_scheduler, scheduler_state
from cinematic.training.state import TrainState
from cinematic.training.trainer import Trainer, run_training

T = "Tensor"
NET = {"0.weight": T, "0.bias": T, "1.weight": T, "1.bias": T, "3.weight": T, "3.bias": T}
GEN = {"0.weight": T, "0.bias": T, "3.weight": T, "3.bias": T}
DISC = {"0.weight": T, "0.bias": T, "2.weight": T, "2.bias": T}
RNG = {
    "python": {"version": "int", "state": T, "gauss": "NoneType"},
    "numpy": {"kind": "str", "keys": T, "pos": "int", "has_gauss": "int", "gauss": "float"},
    "torch": T,
}
COMMON = {
    "format_version": "int",
    "task": "str",
    "config": "dict",
    "data_dir": "str",
    "ema_updates": "int",
    "step": "int",
    "epoch": "int",
    "batch_in_epoch": "int",
    "world_size": "int",
    "rng": [RNG],
    "nan_skips": {"consecutive": "int", "total": "int"},
    "best": {"value": "float", "bad_validations": "int"},
    # added with streaming shards (issue 18): checkpoints without it keep loading (DataPosition)
    "data_position": {"world_size": "int", "batch_size": "int", "carry": "NoneType"},
}
# What the trainer wrote before it was split into stateful parts (torch's own scheduler and scaler
# keys are checked separately: they belong to torch's version, not to this format).
GOLDEN = {
    "toy": {
        **COMMON,
        "model": {"net": NET},
        "ema": {"net": NET},
        "task_state": {"input_dim": "int", "labels": ["str", "str"]},
        "optimizers": {
            "main": {"state": {f"net.{k}": "dict" for k in NET}, "param_groups": ["dict", "dict"]}
        },
        "schedulers": {"main": "dict"},
        "scalers": {},
    },
    "toy_gan": {
        **COMMON,
        "model": {"gen": GEN, "disc": DISC},
        "ema": {"gen": GEN},
        "task_state": {},
        "optimizers": {
            "disc": {"state": {f"disc.{k}": "dict" for k in DISC}, "param_groups": ["dict", "dict"]},
            "gen": {"state": {f"gen.{k}": "dict" for k in GEN}, "param_groups": ["dict", "dict"]},
        },
        "schedulers": {"disc": "dict", "gen": "dict"},
        "scalers": {"disc": "dict", "gen": "dict"},
    },
}


def key_tree(obj, golden):
    """`obj` reduced to the shape of `golden`: dict keys, list lengths and leaf type names."""
    if isinstance(golden, dict) and isinstance(obj, dict):
        return {str(k): key_tree(v, golden.get(str(k), "")) for k, v in obj.items()}
    if isinstance(golden, list) and isinstance(obj, list):
        return [key_tree(v, golden[0]) for v in obj]
    return type(obj).__name__


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("task", "extra"), [("toy", {}), ("toy_gan", {"amp": "fp16"})])
def test_checkpoints_keep_the_format_1_layout(task, extra, toy_cfg, data_dir):
    result = run_training(make_task(task), toy_cfg(max_steps=4, **extra), data_dir)
    checkpoint = load(result.last_checkpoint)  # weights_only: plain containers and tensors only
    assert key_tree(checkpoint, GOLDEN[task]) == GOLDEN[task]
    assert checkpoint["format_version"] == 1 and checkpoint["task"] == task and checkpoint["step"] == 4
    assert checkpoint["world_size"] == 1 and checkpoint["ema_updates"] == 4
    assert checkpoint["config"] == toy_cfg(max_steps=4, **extra).to_dict()
    for phase, state in checkpoint["schedulers"].items():
        assert {"base_lrs", "last_epoch", "_step_count"} <= set(state) and "lr_lambdas" not in state
        assert state["last_epoch"] == 4
        if task == "toy_gan":
            assert {"scale", "_growth_tracker"} <= set(checkpoint["scalers"][phase])


def old_layout_checkpoint(cfg, data_dir: Path) -> dict:
    """A format-1 checkpoint of the toy task laid out by hand, as the trainer before the stateful parts
    wrote it, with values no fresh run has."""
    torch.manual_seed(5)
    net = make_task("toy").build(cfg, data_dir, None).models["net"]
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param))
    tcfg = cfg.training_for("toy")
    optimizer = build_optimizer([net], tcfg)
    scheduler = build_scheduler(optimizer, tcfg, 20, 6)
    for _ in range(9):
        net(torch.randn(4, 4)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    optimizer_state = get_optimizer_state_dict(
        nn.ModuleDict({"net": net}), optimizer, options=StateDictOptions(full_state_dict=True)
    )
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    return {
        "format_version": 1,
        "task": "toy",
        "config": cfg.to_dict(),
        "data_dir": str(data_dir),
        "model": {"net": {k: v.detach().clone() for k, v in net.state_dict().items()}},
        "ema": {"net": {k: v.detach() * 0.5 for k, v in net.state_dict().items()}},
        "ema_updates": 9,
        "task_state": {"input_dim": 4, "labels": ["a", "b"]},
        "step": 9,
        "epoch": 1,
        "batch_in_epoch": 3,
        "world_size": 1,
        "optimizers": {"main": optimizer_state},
        "schedulers": {"main": scheduler_state(scheduler)},
        "scalers": {},
        "rng": [ckpt_io.capture_rng_state()],
        "nan_skips": {"consecutive": 1, "total": 2},
        "best": {"value": 0.25, "bad_validations": 1},
    }


def test_a_hand_laid_format_1_checkpoint_restores_every_part(toy_cfg, data_dir, tmp_path):
    cfg = toy_cfg(max_steps=10)
    old = old_layout_checkpoint(cfg, data_dir)
    path = tmp_path / "old.pth"
    torch.save(old, path)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # not the saved streams

    trainer = Trainer(make_task("toy"), cfg, data_dir, resume=str(path))
    assert trainer.state == TrainState(9, 1, 3, nan_streak=1, nan_total=2, best_value=0.25, bad_validations=1)
    assert trainer.checkpoints.last_saved_step == 9
    # The RNG streams are the saved ones, untouched by the rest of the restore.
    restored = ckpt_io.capture_rng_state()
    assert torch.equal(restored["torch"], old["rng"][0]["torch"])
    assert torch.equal(restored["python"]["state"], old["rng"][0]["python"]["state"])
    assert torch.equal(restored["numpy"]["keys"], old["rng"][0]["numpy"]["keys"])
    net = trainer.models["net"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, old["model"]["net"][key]), key
    names = [name for name, _ in net.named_parameters()]
    for name, shadow in zip(names, trainer.ema.shadow["net"]):
        assert torch.equal(shadow, old["ema"]["net"][name].float()), name
    assert trainer.ema.num_updates == 9
    ps = trainer.phase_states[0]
    assert ps.scheduler.last_epoch == 9 and ps.optimizer.param_groups[0]["lr"] == pytest.approx(
        old["schedulers"]["main"]["_last_lr"][0]
    )
    saved, now = old["optimizers"]["main"]["state"], trainer.checkpoints["optimizers"].state_dict()["main"]
    assert set(saved) == set(now["state"])
    for name in saved:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(saved[name][key], now["state"][name][key]), (name, key)

    # It trains on from there, and what it writes has the same layout again.
    result = trainer.fit()
    assert result.step == 10
    written = load(result.last_checkpoint)
    assert key_tree(written, GOLDEN["toy"]) == GOLDEN["toy"]
    assert (written["nan_skips"]["total"], written["ema_updates"]) == (2, 10)


def test_a_checkpoint_without_ema_starts_the_ema_at_the_restored_weights(toy_cfg, data_dir, tmp_path):
    cfg = toy_cfg(max_steps=10)
    old = old_layout_checkpoint(cfg, data_dir)
    old["ema"], old["ema_updates"] = {}, 0  # written with training.ema_decay: null
    torch.save(old, tmp_path / "old.pth")
    trainer = Trainer(make_task("toy"), cfg, data_dir, resume=str(tmp_path / "old.pth"))
    for param, shadow in zip(trainer.models["net"].parameters(), trainer.ema.shadow["net"]):
        assert torch.equal(param.detach(), shadow)


def test_a_checkpoint_missing_a_model_is_refused(toy_cfg, data_dir, tmp_path):
    cfg = toy_cfg(max_steps=10)
    old = old_layout_checkpoint(cfg, data_dir)
    old["model"] = {"other": old["model"]["net"]}
    torch.save(old, tmp_path / "old.pth")
    with pytest.raises(UserError, match="no weights for model 'net'"):
        Trainer(make_task("toy"), cfg, data_dir, resume=str(tmp_path / "old.pth"))


class Counter:
    """A stateful part that counts its calls."""

    def __init__(self, value: int, calls: list[str], name: str) -> None:
        self.value, self.calls, self.name = value, calls, name

    def state_dict(self) -> dict:
        self.calls.append(f"save {self.name}")
        return {self.name: self.value}

    def load_state_dict(self, state: dict) -> None:
        self.calls.append(f"load {self.name}")
        self.value = state[self.name]


def test_manager_nests_or_flattens_parts_and_restores_in_registration_order(tmp_path):
    calls: list[str] = []
    manager = CheckpointManager(tmp_path, DistEnv(), keep_last_k=1)
    manager.register("a", Counter(1, calls, "a"))
    manager.register(None, Counter(2, calls, "b"))
    assert manager.state_dict() == {"a": {"a": 1}, "b": 2}
    manager.load_state_dict({"a": {"a": 10}, "b": 20})
    assert manager["a"].value == 10 and calls[-2:] == ["load a", "load b"]

    # On another rank only the collective parts are saved (rank 0 alone writes the file).
    other = CheckpointManager(tmp_path, DistEnv(rank=1, world_size=2), keep_last_k=1)
    other.register("a", Counter(1, calls, "a"))
    other.register("c", Counter(3, calls, "c"), collective=True)
    assert other.state_dict() == {"c": {"c": 3}}


def test_manager_keeps_the_newest_step_files_and_copies_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, DistEnv(), keep_last_k=2)
    state = TrainState()
    manager.register(None, state)
    for step in (2, 4, 6):
        state.step = step
        manager.save(step, periodic=True, best=step == 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth", "last.pth", "step_4.pth", "step_6.pth"]
    assert load(manager.last_path)["step"] == 6 and load(manager.best_path)["step"] == 4
    state.step = 7
    manager.save(7, periodic=False)
    assert load(manager.last_path)["step"] == 7 and manager.last_saved_step == 7
    assert not (tmp_path / "step_7.pth").exists()


class FakeConfig:
    def __init__(self, layers: int) -> None:
        self.layers = layers

    def section_name(self, task: str) -> str | None:
        return {"toy": "toy_model"}.get(task)

    def to_dict(self) -> dict:
        return {"toy_model": {"num_layers": self.layers, "training": {"learning_rate": 1.0}}}


def test_resume_compatibility_compares_the_task_section_without_its_training_block():
    checkpoint = {"task": "toy", "config": {"toy_model": {"num_layers": 2, "training": {}}}}
    check_compatible(checkpoint, "toy", FakeConfig(2))  # training keys may change
    with pytest.raises(UserError, match=r"toy_model\.num_layers: 2 != 3"):
        check_compatible(checkpoint, "toy", FakeConfig(3))
    with pytest.raises(UserError, match="belongs to task 'toy'"):
        check_compatible(checkpoint, "other", FakeConfig(2))
