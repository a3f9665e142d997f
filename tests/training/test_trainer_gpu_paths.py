"""What the trainer does for a GPU run, checked on the CPU: host synchronisations per step, the NaN
guard read a step late (as on CUDA), the EMA after a step skipped in one GAN phase, a GAN's finished
models frozen in the later phase, the AMP dtype on GPUs without native bf16, cudnn.benchmark for fixed
shapes, persistent loader workers that still see every epoch, the build barrier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from toy_tasks import ToyGAN, make_task

from cinematic.errors import UserError
from cinematic.training import distributed as D
from cinematic.training.phases import PendingStep
from cinematic.training.task import Built, StepOutput
from cinematic.training.trainer import Trainer, resolve_amp

QUIET = {"validate_every_steps": 1000, "checkpoint_every_steps": 1000}


class Regression:
    """A task whose own code reads nothing back from the device."""

    name = "sync_free"

    def build(self, cfg: Any, data_dir: Path, ctx: Any) -> Built:
        generator = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator)
        net = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))
        return Built(models={"net": net}, train_set=TensorDataset(x, y))

    def training_step(self, models: Any, batch: Any, phase: str, scratch: dict) -> StepOutput:
        x, y = batch
        return StepOutput(loss=nn.functional.mse_loss(models["net"](x), y))

    def export_state(self) -> dict:
        return {}


def count_host_reads(monkeypatch, trainer: Trainer) -> tuple[list[int], list[tuple[int, int]]]:
    """Per train_step, the calls that read a tensor's value on the host (item, tolist, bool, float,
    int); and (step being run, step whose flags were read) for each NaN-guard read."""
    per_step: list[int] = []
    guard_reads: list[tuple[int, int]] = []
    active = [False, 0]
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if active[0]:
                active[1] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    real_step, real_read = trainer.train_step, PendingStep.read

    def train_step(group):
        active[:] = [True, 0]
        try:
            real_step(group)
        finally:
            active[0] = False
            per_step.append(active[1])

    def read(pending):  # (the step being run, or the last one outside a step; the step read)
        guard_reads.append((trainer.state.step + (1 if active[0] else 0), pending.step))
        return real_read(pending)

    monkeypatch.setattr(trainer, "train_step", train_step)
    monkeypatch.setattr(PendingStep, "read", read)
    return per_step, guard_reads


@pytest.mark.parametrize("amp", [False, "fp16"])
def test_one_host_read_per_step_the_nan_guards(toy_cfg, data_dir, monkeypatch, amp):
    cfg = toy_cfg(max_steps=8, amp=amp, **QUIET)
    cfg.logging.log_every_steps = 1000
    trainer = Trainer(Regression(), cfg, data_dir)
    per_step, guard_reads = count_host_reads(monkeypatch, trainer)
    trainer.fit()
    assert per_step == [1] * 8  # the old guard read twice under DDP (bool + any_true), once per phase
    assert [read for _, read in guard_reads] == list(range(1, 9))


def test_a_gan_step_reads_the_host_once_not_once_per_phase(toy_cfg, data_dir, monkeypatch):
    cfg = toy_cfg(max_steps=6, **QUIET)
    cfg.logging.log_every_steps = 1000
    trainer = Trainer(make_task("toy_gan"), cfg, data_dir)
    per_step, _ = count_host_reads(monkeypatch, trainer)
    trainer.fit()
    assert per_step == [1] * 6


def test_read_a_step_late_as_on_cuda_the_guard_still_skips_counts_and_stops(toy_cfg, data_dir, monkeypatch):
    cfg = toy_cfg(max_steps=6, **QUIET)
    cfg.logging.log_every_steps = 1000
    trainer = Trainer(Regression(), cfg, data_dir)
    trainer.flag_lag = 1
    per_step, guard_reads = count_host_reads(monkeypatch, trainer)
    trainer.fit()
    # Inside step n the guard reads step n - 1's flags (the device has finished that step by then);
    # the last step's are read when the run ends.
    assert per_step == [0] + [1] * 5
    assert guard_reads == [(n, n - 1) for n in range(2, 7)] + [(6, 6)]

    monkeypatch.setenv("TOY_NAN_AT", "5")
    trainer = Trainer(
        make_task("toy"), toy_cfg(max_steps=7, checkpoint_every_steps=1, keep_last_k=10), data_dir
    )
    trainer.flag_lag = 1
    trainer.fit()
    ckpt = trainer.run_dir / "checkpoints"
    saved = {n: torch.load(ckpt / f"step_{n}.pth", weights_only=True) for n in (4, 5, 6)}
    for part in ("model", "ema"):
        assert all(torch.equal(value, saved[5][part]["net"][k]) for k, value in saved[4][part]["net"].items())
    assert saved[5]["ema_updates"] == 4 and saved[6]["ema_updates"] == 5
    assert saved[5]["nan_skips"] == {"consecutive": 1, "total": 1}  # exact in every checkpoint
    assert saved[6]["nan_skips"] == {"consecutive": 0, "total": 1}

    monkeypatch.setenv("TOY_NAN_AT", "3,4,5")
    task = make_task("toy")
    cfg = toy_cfg(max_nan_skips=3, **QUIET)
    cfg.training.run_name = "stops"
    cfg.logging.log_every_steps = 1000  # a log line reads the flags at once
    trainer = Trainer(task, cfg, data_dir)
    trainer.flag_lag = 1
    with pytest.raises(UserError, match=r"stopped at step 5: 3 consecutive"):
        trainer.fit()
    assert task.calls == 6  # at most one step more than reading at once (which stops in step 5)
    assert trainer.state.nan_total == 3


class DiscNanGAN(ToyGAN):
    """The toy GAN with a NaN discriminator loss in step `NAN_AT` only: its generator phase steps."""

    NAN_AT = 3

    def training_step(self, models: Any, batch: Any, phase: str, scratch: dict) -> StepOutput:
        out = super().training_step(models, batch, phase, scratch)
        if phase == "disc" and self.calls == self.NAN_AT:
            out.loss = out.loss * float("nan")
        return out


def test_a_step_skipped_in_one_gan_phase_is_counted_and_leaves_the_ema(toy_cfg, data_dir, monkeypatch):
    monkeypatch.setenv("TOY_NOISE", "0")
    cfg = toy_cfg(max_steps=4, checkpoint_every_steps=1, keep_last_k=10)
    trainer = Trainer(DiscNanGAN(), cfg, data_dir)
    trainer.fit()
    ckpt = trainer.run_dir / "checkpoints"
    s2, s3 = (torch.load(ckpt / f"step_{n}.pth", weights_only=True) for n in (2, 3))

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(s2["model"]["disc"], s3["model"]["disc"])  # the skipped phase
    assert not same(s2["model"]["gen"], s3["model"]["gen"])  # the generator phase stepped
    assert same(s2["ema"]["gen"], s3["ema"]["gen"]) and s3["ema_updates"] == 2  # docs: not updated
    assert s3["nan_skips"] == {"consecutive": 1, "total": 1}


def test_the_generator_phase_runs_the_discriminator_without_weight_gradients(toy_cfg, data_dir):
    task = make_task("toy_gan")
    seen: dict[str, set[bool]] = {"disc": set(), "gen": set()}
    step = task.training_step

    def recording(models, batch, phase, scratch):
        seen[phase].update(p.requires_grad for p in models["disc"].parameters())
        out = step(models, batch, phase, scratch)
        if phase == "gen":  # gradients still flow through the discriminator to the generated output
            assert torch.autograd.grad(out.loss, scratch["fake"], retain_graph=True)[0].abs().sum() > 0
        return out

    task.training_step = recording
    trainer = Trainer(task, toy_cfg(max_steps=3, **QUIET), data_dir)
    trainer.fit()
    assert seen == {"disc": {True}, "gen": {False}}
    assert all(p.requires_grad for p in trainer.models["disc"].parameters())  # restored


def test_amp_on_a_gpu_without_native_bf16_is_fp16(monkeypatch):
    calls = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return including_emulation  # a V100/T4: bf16 only emulated

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_amp(True, torch.device("cuda", 0)) == torch.float16
    assert calls == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # A100
    assert resolve_amp(True, torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_amp("bf16", torch.device("cuda", 0)) == torch.bfloat16


def test_cudnn_benchmark_goes_on_only_for_fixed_shapes(toy_cfg, data_dir, monkeypatch):
    from cinematic.training.runtime import FixedShapes

    watch = FixedShapes()
    assert watch.observe([{"x": torch.zeros(4, 3)}, {"x": torch.zeros(4, 3)}]) is None  # not decided yet
    assert watch.observe([{"x": torch.zeros(4, 5)}]) is False  # the shapes vary
    watch = FixedShapes()
    fixed = [{"x": torch.zeros(4, 3), "y": [torch.zeros(2)]}]
    assert watch.observe(fixed) is None and watch.observe(fixed) is None and watch.observe(fixed) is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert D.enable_cudnn_benchmark(deterministic=True) is False and not torch.backends.cudnn.benchmark
    assert D.enable_cudnn_benchmark(deterministic=False) and torch.backends.cudnn.benchmark
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert Trainer(make_task("toy"), toy_cfg(max_steps=1, run_name="cpu"), data_dir)._shapes is None  # CPU


class PidSet(Dataset):
    """Items tell which process loaded them and which epoch that process's copy was at."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = torch.full((4,), float(index))
        return {"x": x, "y": x[:1], "pid": torch.tensor(os.getpid()), "epoch": torch.tensor(self.epoch)}


class PidTask(Regression):
    name = "pid"

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def build(self, cfg: Any, data_dir: Path, ctx: Any) -> Built:
        self.ctx = ctx
        net = nn.Linear(4, 1)
        return Built(models={"net": net}, train_set=PidSet())

    def training_step(self, models: Any, batch: Any, phase: str, scratch: dict) -> StepOutput:
        self.seen.update(zip(batch["pid"].tolist(), batch["epoch"].tolist()))
        return StepOutput(loss=nn.functional.mse_loss(models["net"](batch["x"]), batch["y"]))


def test_persistent_loader_workers_see_every_epoch(toy_cfg, data_dir):
    cfg = toy_cfg(max_steps=6, **QUIET)  # 2 steps per epoch: epochs 0, 1, 2
    cfg.data.num_workers = 1
    task = PidTask()
    trainer = Trainer(task, cfg, data_dir)
    assert trainer.train_loader.persistent_workers
    trainer.fit()
    pids = {pid for pid, _ in task.seen}
    assert len(pids) == 1 and os.getpid() not in pids  # one worker process for the whole run
    assert {epoch for _, epoch in task.seen} == {0, 1, 2}


def test_the_build_waits_in_the_long_timeout_barrier(toy_cfg, data_dir):
    task = PidTask()
    trainer = Trainer(task, toy_cfg(max_steps=1), data_dir)
    assert task.ctx.barrier == trainer.env.wait_for_others
    assert D.DistEnv().wait_for_others() is None  # a single process: nothing to wait for
