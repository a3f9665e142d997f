"""One torchrun job (2 CPU processes, gloo) shared by the scale tests, run once per session:

    torchrun --max-restarts 2 --nproc_per_node 2 scale_jobs.py --config cfg.yaml --data-dir D --out OUT

(One restart is the test; the second is slack for a worker lost to something else on a loaded machine,
which once made the whole job fail in a full-suite run; only attempt 0 kills a rank.)

First attempt (TORCHELASTIC_RESTART_COUNT 0):
1. FSDP2 (test_dcp_checkpoint): the toy task, 6 steps, sharded checkpoints at steps 3 and 6; rank 0
   writes the full state it ends with (weights, EMA, optimizer, gathered) to OUT/fsdp_full.pt. Then a
   new trainer resumes from step_6.dcp on 2 ranks and rank 0 writes the state it loaded to
   OUT/fsdp_resumed2_full.pt.
2. Restart (test_preemption): a straight 2-rank DDP run ("straight", 8 steps), then the same run
   ("killed") in which rank 1 SIGKILLs itself as step 5 starts (after the step-4 checkpoint).
torchrun restarts both processes; the second attempt only runs "killed" again with `--resume auto`,
which continues from step 4 and must end bitwise equal to "straight".
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
FSDP_STEPS, DDP_STEPS, KILL_AT = 6, 8, 5
TRAINING = {
    "optimizer": "adamw",
    "batch_size": 2,
    "ema_decay": 0.9,
    "validate_every_steps": 100,
    "keep_last_k": 3,
}


def full_state(trainer: Any) -> dict[str, Any]:
    """Weights, EMA and optimizer state of a trainer, gathered whole (a collective under FSDP)."""
    parts = trainer.checkpoints
    return {
        "model": parts["model"].state_dict(),
        "ema": next(e.part for e in parts.entries if type(e.part).__name__ == "EMAWeights").state_dict(),
        "optimizers": parts["optimizers"].state_dict(),
        "step": trainer.state.step,
    }


def _job(args: argparse.Namespace) -> None:
    import torch.distributed as dist
    from toy_tasks import ToyRegression, make_task, register

    from cinematic.registry import load_config
    from cinematic.training.distributed import init_distributed
    from cinematic.training.trainer import Trainer

    register()
    init_distributed()  # the group every trainer below joins (restart-safe: see _restart_store)
    rank = dist.get_rank()
    out, data_dir = Path(args.out), Path(args.data_dir)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    def cfg(**keys: Any) -> Any:
        return load_config(args.config, [f"training.{k}={v}" for k, v in keys.items()])

    if attempt == 0:
        fsdp = cfg(strategy="fsdp", run_name="fsdp", max_steps=FSDP_STEPS, checkpoint_every_steps=3)
        trainer = Trainer(make_task("toy"), fsdp, data_dir)
        trainer.fit()
        state = full_state(trainer)
        if rank == 0:
            torch.save(state, out / "fsdp_full.pt")
        folder = Path(fsdp.training.work_dir) / "fsdp" / "checkpoints" / f"step_{FSDP_STEPS}.dcp"
        resumed = Trainer(make_task("toy"), fsdp, data_dir, resume=str(folder))
        state = full_state(resumed)
        if rank == 0:
            torch.save(state, out / "fsdp_resumed2_full.pt")
        Trainer(make_task("toy"), cfg(run_name="straight", max_steps=DDP_STEPS, checkpoint_every_steps=2),
                data_dir).fit()  # fmt: skip

    class KilledToy(ToyRegression):
        def training_step(self, models: Any, batch: Any, phase: str, scratch: dict) -> Any:
            if attempt == 0 and rank == 1 and self.calls + 1 == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().training_step(models, batch, phase, scratch)

    killed = cfg(run_name="killed", max_steps=DDP_STEPS, checkpoint_every_steps=2)
    Trainer(KilledToy(), killed, data_dir, resume="auto").fit()
    if rank == 0:
        (out / f"done_attempt{attempt}").write_text("ok")
    dist.destroy_process_group()


@functools.cache
def run_job() -> Path:
    """Run the job once per test session; returns its folder (work/, out/, log.txt)."""
    from conftest import toy_overrides

    from cinematic.configs import load_config

    root = Path(tempfile.mkdtemp(prefix="scale_job_"))
    atexit.register(shutil.rmtree, root, True)  # removed when the test session ends
    sets = [*toy_overrides(root / "work", **TRAINING), "logging.logger=none"]
    (root / "cfg.yaml").write_text(load_config(None, sets).to_yaml())
    (root / "data").mkdir()
    (root / "out").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--max-restarts=2", "--monitor-interval=0.2", str(HERE / "scale_jobs.py"),
           "--config", str(root / "cfg.yaml"), "--data-dir", str(root / "data"), "--out", str(root / "out")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1", "TOY_NOISE": "0.01"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    (root / "log.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    _job(parser.parse_args())
