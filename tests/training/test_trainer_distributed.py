"""DDP and FSDP2 under torchrun (2 CPU processes, gloo), against a single-process run.

One torchrun job (see `toy_tasks._distributed`) runs, for the one-optimizer and the GAN toy task, DDP,
FSDP, and FSDP resumed from the FSDP run's step-3 checkpoint; each rank saves the weights it ends with. SGD keeps the comparison to 1e-6
meaningful: Adam divides by √v, which turns rounding differences of tiny gradients into visible ones.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import HERE, toy_overrides
from toy_tasks import make_task

from cinematic.configs import load_config
from cinematic.training.sharded import read_full
from cinematic.training.trainer import run_training

STEPS = 6
TRAINING = {
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "max_steps": STEPS,
    "batch_size": 2,  # per process: the global batch is 4
    "checkpoint_every_steps": 3,
    "validate_every_steps": 3,
    "keep_last_k": 3,
    "ema_decay": 0.9,
    "gradient_accumulation_steps": 2,  # 8 items per step; the GAN interleaves forwards and backwards
}


@pytest.fixture(scope="module")
def torchrun_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    sets = [*toy_overrides(root / "work", **TRAINING), "logging.logger=none"]
    cfg_path = root / "cfg.yaml"
    cfg_path.write_text(load_config(None, sets).to_yaml())
    (root / "data").mkdir()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "toy_tasks.py"),
        "distributed",
        "--config",
        str(cfg_path),
        "--data-dir",
        str(root / "data"),
        "--out",
        str(root / "out"),
    ]
    # No input noise: each rank draws its own, so it would differ from the single process's draws.
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1", "TOY_NOISE": "0"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {path.stem: torch.load(path, weights_only=True) for path in (root / "out").glob("*.pt")}
    for run in ("toy_ddp", "toy_gan_ddp"):
        results[f"{run}_checkpoint"] = torch.load(
            root / "work" / run / "checkpoints" / "last.pth", weights_only=True
        )
    for run in ("toy_fsdp", "toy_gan_fsdp"):  # FSDP writes sharded checkpoints (step_<n>.dcp/)
        results[f"{run}_checkpoint"] = read_full(root / "work" / run / "checkpoints" / f"step_{STEPS}.dcp")
    return results


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b) and a
    return max(float((a[m][k].double() - b[m][k].double()).abs().max()) for m in a for k in a[m])


@pytest.mark.parametrize("task", ["toy", "toy_gan"])
def test_ddp_ranks_end_identical_and_match_one_process_with_the_same_global_batch(
    task, torchrun_results, toy_cfg, data_dir, monkeypatch
):
    monkeypatch.setenv("TOY_NOISE", "0")
    ddp0, ddp1 = torchrun_results[f"{task}_ddp_rank0"], torchrun_results[f"{task}_ddp_rank1"]
    assert max_diff(ddp0, ddp1) == 0.0
    single = run_training(make_task(task), toy_cfg(**{**TRAINING, "batch_size": 4}), data_dir)
    reference = torch.load(single.last_checkpoint, weights_only=True)["model"]
    assert max_diff(ddp0, reference) < 1e-6
    start = torch.load(single.run_dir / "checkpoints" / "step_3.pth", weights_only=True)["model"]
    assert max_diff(reference, start) > 1e-4  # the weights moved: 100× the tolerance


@pytest.mark.parametrize("task", ["toy", "toy_gan"])
def test_fsdp_matches_ddp_and_its_checkpoint_resumes(task, torchrun_results):
    fsdp = torchrun_results[f"{task}_fsdp_rank0"]  # gathered on rank 0
    assert max_diff(fsdp, torchrun_results[f"{task}_ddp_rank0"]) < 1e-6
    assert max_diff(fsdp, torchrun_results[f"{task}_fsdp_resumed_rank0"]) < 1e-6


@pytest.mark.parametrize("task", ["toy", "toy_gan"])
def test_fsdp_checkpoint_holds_the_same_ema_and_optimizer_state_as_ddp(task, torchrun_results):
    ddp, fsdp = torchrun_results[f"{task}_ddp_checkpoint"], torchrun_results[f"{task}_fsdp_checkpoint"]
    assert fsdp["ema"] and max_diff(fsdp["ema"], ddp["ema"]) < 1e-6
    for phase, state in ddp["optimizers"].items():
        other = fsdp["optimizers"][phase]["state"]
        assert set(state["state"]) == set(other)  # the same parameter names, whatever the strategy
        for name, values in state["state"].items():
            for key, value in values.items():
                assert torch.allclose(value.float(), other[name][key].float(), atol=1e-6), (phase, name, key)
