"""The stateful pieces of a training run, as torchtitan has them: each one exposes `state_dict()` and
`load_state_dict()`, and `CheckpointManager` (`cinematic.training.checkpoint`) collects them.

`TrainState` is the loop's own position and counters; the other pieces (model weights, EMA, optimizers,
schedulers, grad scalers, RNG streams) are adapters in `cinematic.training.checkpoint`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol


class Stateful(Protocol):
    """Anything a checkpoint saves and restores."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


@dataclass
class TrainState:
    """Where the loop is and what it counts. Checkpoint keys (top level, unchanged since format 1)::

    step, epoch, batch_in_epoch,
    nan_skips: {consecutive, total},
    best: {value, bad_validations}
    """

    step: int = 0
    """Optimizer steps taken (skipped updates included: the step is spent)."""
    epoch: int = 0
    batch_in_epoch: int = 0
    """Micro-batches of the current epoch already consumed by this rank (the resume position)."""
    nan_streak: int = 0
    """Consecutive steps whose update was skipped for a non-finite loss or gradient."""
    nan_total: int = 0
    best_value: float | None = None
    """The best `training.best_metric` so far (None: no finite value yet)."""
    bad_validations: int = 0
    """Validations since the best one (`training.early_stopping_patience`)."""

    def judge(self, value: float, mode: str, patience: int | None) -> tuple[bool, bool]:
        """Record a validation's `best_metric` value: (improved, stop early). An improvement is a finite
        value better than the best so far in `mode` ("min" or "max"); `patience` validations in a row
        without one stop the run (None: never)."""
        best = self.best_value
        if (best is None or (value < best if mode == "min" else value > best)) and math.isfinite(value):
            self.best_value, self.bad_validations = value, 0
            return True, False
        self.bad_validations += 1
        return False, patience is not None and self.bad_validations >= patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "nan_skips": {"consecutive": self.nan_streak, "total": self.nan_total},
            "best": {"value": self.best_value, "bad_validations": self.bad_validations},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        nan = state.get("nan_skips") or {}
        self.nan_streak, self.nan_total = int(nan.get("consecutive", 0)), int(nan.get("total", 0))
        best = state.get("best") or {}
        self.best_value = best.get("value")
        self.bad_validations = int(best.get("bad_validations", 0))
