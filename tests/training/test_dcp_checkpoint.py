"""Sharded FSDP2 checkpoints (torch.distributed.checkpoint): one file per rank, resumed on 2 ranks and
on 1 process with exactly the saved weights, EMA and optimizer state; best.pth stays one
consolidated inference file. The 2-rank run is the shared torchrun job of `scale_jobs.py`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from scale_jobs import FSDP_STEPS, full_state, run_job
from toy_tasks import make_task

from cinematic.configs import load_config
from cinematic.errors import UserError
from cinematic.training import checkpointing as ckpt_io
from cinematic.training.sharded import read_full
from cinematic.training.trainer import Trainer, run_training


@pytest.fixture(scope="module")
def job() -> Path:
    return run_job()


def ckpt_dir(job: Path) -> Path:
    return job / "work" / "fsdp" / "checkpoints"


def fsdp_cfg(job: Path, **keys):
    sets = [f"training.{k}={v}" for k, v in {"strategy": "fsdp", "run_name": "fsdp", **keys}.items()]
    return load_config(job / "cfg.yaml", sets)


def assert_equal(a, b, path="state"):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: {sorted(set(a) ^ set(b))}"
        for key in a:
            assert_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_fsdp_run_writes_one_file_per_rank_and_an_inference_best(job):
    folder = ckpt_dir(job) / f"step_{FSDP_STEPS}.dcp"
    names = {p.name for p in folder.iterdir()}
    assert names == {".metadata", "__0_0.distcp", "__1_0.distcp", "train_state.pth"}
    assert not (ckpt_dir(job) / "last.pth").exists()  # nothing gathered whole for resuming
    state = torch.load(folder / "train_state.pth", weights_only=True)
    assert state["step"] == FSDP_STEPS and state["world_size"] == 2 and len(state["rng"]) == 2
    reference = torch.load(job / "out" / "fsdp_full.pt", weights_only=True)
    best = torch.load(ckpt_dir(job) / "best.pth", weights_only=True)
    full = read_full(folder)  # the single-file layout, for inspection and conversion
    assert_equal(full["model"], reference["model"])
    assert_equal(full["ema"], reference["ema"]["ema"])
    assert full["ema_updates"] == reference["ema"]["ema_updates"] == FSDP_STEPS
    assert_equal(full["optimizers"]["main"]["state"], reference["optimizers"]["main"]["state"])
    assert best["inference_only"] and "optimizers" not in best
    assert best["step"] <= FSDP_STEPS and set(best["model"]["net"]) == set(reference["model"]["net"])
    if best["step"] == FSDP_STEPS:
        assert_equal(best["model"], reference["model"])


def test_sharded_checkpoint_resumes_on_two_ranks_with_the_saved_state(job):
    reference = torch.load(job / "out" / "fsdp_full.pt", weights_only=True)
    resumed = torch.load(job / "out" / "fsdp_resumed2_full.pt", weights_only=True)
    assert reference["optimizers"]["main"]["state"], "the optimizer state must not be empty"
    assert_equal(resumed, reference)


def test_sharded_checkpoint_resumes_on_one_process_and_continues(job, data_dir, tmp_path):
    reference = torch.load(job / "out" / "fsdp_full.pt", weights_only=True)
    shutil.copytree(job / "work" / "fsdp", tmp_path / "work" / "fsdp")  # the job's folder stays as it is
    here = ckpt_dir(tmp_path)
    found = ckpt_io.find_resume_checkpoint(here)
    assert found is not None and found[0].name == f"step_{FSDP_STEPS}.dcp"
    trainer = Trainer(make_task("toy"), fsdp_cfg(job, work_dir=tmp_path / "work"), data_dir, resume="auto")
    assert not trainer.checkpoints.sharded  # one process: no FSDP, single-file checkpoints again
    assert_equal(full_state(trainer), reference)

    # It continues on one process; --resume auto then prefers the newer single file.
    cfg = fsdp_cfg(job, work_dir=tmp_path / "work", max_steps=FSDP_STEPS + 2)
    result = run_training(make_task("toy"), cfg, data_dir, resume="auto")
    assert result.step == FSDP_STEPS + 2 and result.last_checkpoint.name == "last.pth"
    assert ckpt_io.find_resume_checkpoint(here)[0].name == "last.pth"


def test_inference_best_and_incomplete_folders_are_refused(job, data_dir, tmp_path):
    with pytest.raises(UserError, match="inference only"):
        Trainer(make_task("toy"), fsdp_cfg(job), data_dir, resume=str(ckpt_dir(job) / "best.pth"))
    broken = tmp_path / "step_9.dcp"
    broken.mkdir()
    (broken / ".metadata").write_bytes(b"")
    (broken / "train_state.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable sharded checkpoint"):
        ckpt_io.load_for_resume(broken)
