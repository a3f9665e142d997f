"""Preemption: SIGTERM/SIGUSR1 → one checkpoint at the step boundary → exit 75 (→ scontrol requeue
under SLURM) → `--resume auto` ends bitwise equal to an uninterrupted run; and a rank SIGKILLed under
`torchrun --max-restarts 1` continues from the last checkpoint to the same end."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import toy_overrides
from scale_jobs import DDP_STEPS, KILL_AT, run_job
from test_trainer_resume import assert_same_tensors
from toy_tasks import ToyRegression, make_task

from cinematic.configs import load_config
from cinematic.training.preemption import PREEMPTED_EXIT_CODE, Preempted
from cinematic.training.trainer import run_training

STEPS = {"max_steps": 12, "checkpoint_every_steps": 4, "keep_last_k": 10}


class SignalsItself(ToyRegression):
    """Sends `sig` to its own process during training step `at`."""

    def __init__(self, at: int, sig: int) -> None:
        super().__init__()
        self.at, self.sig = at, sig

    def training_step(self, *args):
        if self.calls + 1 == self.at:
            os.kill(os.getpid(), self.sig)
        return super().training_step(*args)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigterm_writes_one_checkpoint_exits_75_requeues_and_resumes_bitwise(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # a fake scontrol that records its arguments
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.txt"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = load_config(None, [*toy_overrides(tmp_path / "work", **STEPS, requeue=True), "logging.logger=none"])
    (tmp_path / "data").mkdir()
    # The signal comes during step 6 (this process: the handler only sets the flag).
    with pytest.raises(Preempted) as caught:
        run_training(SignalsItself(6, signal.SIGTERM), cfg, tmp_path / "data")
    # Uncaught, this SystemExit ends the process (`cinematic train`, torchrun workers) with status 75.
    assert isinstance(caught.value, SystemExit) and caught.value.code == PREEMPTED_EXIT_CODE == 75
    assert caught.value.requeued and caught.value.step == 6
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    ckpt_dir = tmp_path / "work" / "toy" / "checkpoints"
    # One checkpoint at the step the signal came in (6), besides the periodic one at 4.
    assert sorted(p.name for p in ckpt_dir.glob("*.pth")) == ["last.pth", "step_4.pth"]
    assert caught.value.checkpoint == ckpt_dir / "last.pth" and load(ckpt_dir / "last.pth")["step"] == 6

    resumed = run_training(make_task("toy"), cfg, tmp_path / "data", resume="auto")
    straight_cfg = load_config(None, toy_overrides(tmp_path / "work", **STEPS, run_name="straight"))
    straight = run_training(make_task("toy"), straight_cfg, tmp_path / "data")
    assert resumed.step == straight.step == 12
    assert_same_tensors(load(straight.last_checkpoint), load(resumed.last_checkpoint))


def test_sigusr1_in_process_raises_preempted_without_requeue_outside_slurm(toy_cfg, data_dir, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Preempted) as caught:
        run_training(SignalsItself(3, signal.SIGUSR1), toy_cfg(**STEPS, requeue=True), data_dir)
    assert caught.value.code == 75 and caught.value.step == 3 and not caught.value.requeued
    assert load(caught.value.checkpoint)["step"] == 3
    assert signal.getsignal(signal.SIGUSR1) is previous  # the handlers are put back


def test_rank_killed_under_torchrun_restart_resumes_to_the_uninterrupted_end():
    job = run_job()
    assert not (job / "out" / "done_attempt0").exists()  # rank 1 died in the first attempt
    assert (job / "out" / "done_attempt1").exists()
    killed = job / "work" / "killed" / "checkpoints"
    assert load(killed / f"step_{KILL_AT - 1}.pth")["step"] == KILL_AT - 1
    straight = load(job / "work" / "straight" / "checkpoints" / "last.pth")
    resumed = load(killed / "last.pth")
    assert resumed["step"] == straight["step"] == DDP_STEPS
    assert_same_tensors(straight, resumed)
