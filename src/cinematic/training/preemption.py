"""Preemption: SIGTERM or SIGUSR1 → one checkpoint at the next step boundary → exit 75 (→ requeue).

A cluster that takes the machines back (SLURM preemption or time limit, Kubernetes eviction, a spot
instance) sends SIGTERM and kills the processes a grace period later (SLURM: `KillWait`, 30 s by
default; `#SBATCH --signal=USR1@120` sends SIGUSR1 120 s before the time limit). While the trainer
runs, both signals only set a flag in the handler. After every optimizer step the ranks agree on it
with one all-reduce (MAX) of one integer on a gloo CPU group (no device synchronisation; a rank whose
signal came late never keeps the others waiting in a collective). The all-reduce runs in the
background during the next step: after step k each rank reads the result started after step k - 1
(all ranks read the same value) and starts the next one, so a signal is acted on one step later and
the check costs a step almost nothing (`benchmarks/training_levers.py`). When any rank was
signalled, every rank writes the same checkpoint through the `CheckpointManager` (atomic, as every
save) and the run leaves with `Preempted`, a `SystemExit` whose code is `PREEMPTED_EXIT_CODE` (75,
sysexits' EX_TEMPFAIL: "try again later").

Under SLURM (`SLURM_JOB_ID` set) with `training.requeue: true`, rank 0 runs
`scontrol requeue $SLURM_JOB_ID` before leaving: the job goes back into the queue, and its script's
`--resume auto` continues bitwise from the checkpoint. docs/scale.md has the recipes (sbatch, torchrun
`--max-restarts`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("cinematic.training")

PREEMPTED_EXIT_CODE = 75
"""Exit status of a run that stopped for a preemption signal after writing its checkpoint."""
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(SystemExit):
    """The run stopped at `step` for a preemption signal; `checkpoint` holds everything to resume.
    Uncaught, it ends the process with `PREEMPTED_EXIT_CODE`."""

    def __init__(self, step: int, checkpoint: Path, requeued: bool) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step, self.checkpoint, self.requeued = step, checkpoint, requeued


class PreemptionWatch:
    """The flag the signal handlers set and the per-step agreement on it."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.signalled: int | None = None
        """The signal received (None: none yet)."""
        self._pending: tuple[Any, torch.Tensor] | None = None
        """The all-reduce in flight (its work handle and buffer), started after the previous step."""

    def _handler(self, signum: int, frame: Any) -> None:
        self.signalled = signum  # nothing else here: the loop acts at the next step boundary

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """SIGTERM and SIGUSR1 set the flag inside the block (then the previous handlers come back).
        Outside the main thread (signals cannot be caught there) nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handler) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._drain()

    def agreed(self) -> bool:
        """Whether any rank was signalled, as of the previous step (every rank calls it after every
        step: a collective). One process: as of now."""
        if not self.env.is_distributed:
            return self.signalled is not None
        import torch.distributed as dist

        result = False
        if self._pending is not None:
            work, flag = self._pending
            work.wait()  # started a step ago: normally long done
            result = bool(flag.item())
            self._pending = None
        if not result:
            flag = torch.tensor([int(self.signalled is not None)], dtype=torch.int32)
            work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.env.wait_group, async_op=True)
            self._pending = (work, flag)
        return result

    def _drain(self) -> None:
        """Wait for the all-reduce in flight (every rank started it) before the group may go."""
        if self._pending is not None:
            work, _ = self._pending
            self._pending = None
            with contextlib.suppress(RuntimeError):  # a peer that died: nothing left to agree on
                work.wait()

    def leave(self, step: int, checkpoint: Path, requeue: bool) -> None:
        """After the checkpoint: requeue (rank 0, SLURM, `training.requeue`) and raise `Preempted`."""
        name = signal.Signals(self.signalled).name if self.signalled else "another rank's signal"
        requeued = False
        if self.env.is_main_process:
            log.warning("preempted (%s): checkpoint at step %d in %s", name, step, checkpoint)
            if requeue:
                requeued = requeue_slurm_job()
        raise Preempted(step, checkpoint, requeued)


def requeue_slurm_job() -> bool:
    """`scontrol requeue $SLURM_JOB_ID`; False (with a warning) outside SLURM or when it fails."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        log.warning("training.requeue: SLURM_JOB_ID is not set (not a SLURM job); not requeued")
        return False
    try:
        done = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("training.requeue: scontrol requeue %s failed: %s", job, err)
        return False
    if done.returncode != 0:
        log.warning("training.requeue: scontrol requeue %s failed (%d): %s", job, done.returncode,
                    done.stderr.strip())  # fmt: skip
        return False
    log.warning("training.requeue: SLURM job %s requeued; it continues with --resume auto", job)
    return True
