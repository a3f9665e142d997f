"""The contract between the one `Trainer` and a model family (a *task*).

A task is the only thing a new model writes besides its model file: how to build the model(s) and the
data, the loss of one step, validation metrics, a sample for the logger, and the state generation
needs (vocabularies, statistics). The trainer owns the loop, devices, DDP/FSDP, AMP, accumulation,
clipping, EMA, checkpoints and logging; a task never calls `backward()` or `torch.save`.

Checkpoint layout written by the trainer and read by the family's inference loader (`ModelFamily.load`;
all plain containers/tensors)::

    {"format_version": 1, "task": "music", "config": {...resolved Config.to_dict()...},
     "data_dir": "...", "model": {name: state_dict}, "ema": {name: state_dict} (may be empty),
     "task_state": export_state(), "step": int, "epoch": int, ...optimizer/scheduler/RNG state...}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs import Config
from cinematic.data.skips import SkippedFiles


@dataclass
class Phase:
    """One optimizer and the models whose parameters it steps. Phases run in order every step, so a
    GAN lists the discriminator first and the generator second (Kong et al. 2020, Alg. 1)."""

    name: str
    models: list[str]


@dataclass
class Built:
    """What `Task.build` returns."""

    models: dict[str, nn.Module]
    train_set: Dataset
    val_set: Dataset | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    phases: list[Phase] | None = None
    """None: one phase "main" over every model."""
    ema_models: list[str] | None = None
    """Models that keep an EMA copy (None: all). A GAN keeps one for the generator only."""
    sample_weights: Sequence[float] | None = None
    """Per-item sampling weights (balanced sampling); None: uniform shuffling."""
    throughput_unit: str = "samples"
    """What `StepOutput.num_items` counts, e.g. "tokens" or "frames"; shown as <unit>/s."""

    def resolved_phases(self) -> list[Phase]:
        return self.phases or [Phase("main", list(self.models))]


@dataclass
class StepOutput:
    """The result of one phase of one training step."""

    loss: torch.Tensor
    """Scalar the phase's optimizer minimises (already averaged over the micro-batch)."""
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    """Extra scalars, logged as train/<name>."""
    num_items: int | torch.Tensor | None = None
    """Items in this micro-batch in `Built.throughput_unit` (None: the batch size). A 0-dim tensor
    is fine and better than `int(t.sum())`: the trainer reads it only when it logs, so counting does
    not make the step wait for the forward pass."""


@dataclass
class Media:
    """One thing to show in TensorBoard/W&B."""

    kind: Literal["audio", "image", "text", "file"]
    name: str
    data: Any
    """audio: float32 ndarray (samples,) or (channels, samples) in [-1, 1]; image: uint8 HWC ndarray or a
    matplotlib Figure; text: str; file: a Path written under the run folder (e.g. a MIDI sample)."""
    sample_rate: int | None = None


@dataclass
class BuildContext:
    """What a task may need to know about the run while it builds."""

    run_dir: Path
    """<work_dir>/<task or run_name>/ (checkpoints/ lives inside)."""
    cache_dir: Path
    """<work_dir>/cache/: feature caches shared by runs, keyed by content hash + feature config."""
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    restored_state: dict[str, Any] | None = None
    """`export_state()` of the checkpoint being resumed (reuse its vocabularies), else None."""
    barrier: Callable[[], None] = lambda: None
    """Waits for every rank. The trainer hands in `DistEnv.wait_for_others`: a barrier of its own CPU
    (gloo) group whose timeout (`CINEMATIC_BUILD_TIMEOUT_MIN`, a day by default) is meant for waits as
    long as a feature extraction, not the process group's (`CINEMATIC_DIST_TIMEOUT_MIN`)."""
    skipped: SkippedFiles = field(default_factory=SkippedFiles)
    """Where a build reports a training file it cannot read (`skipped.skip(path, reason)`): left out
    and listed in <run_dir>/skipped_files.json, or refused under `data.strict`."""

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[bool]:
        """Work every rank would repeat (feature extraction, tokenizer fitting): local rank 0 does it
        while the others wait at `barrier`, then they read its (atomically written) cache.
        Yields True on the process that should do the work. Every rank calls the barrier once: the
        others before the block, local rank 0 after it, so they wait as long as the work takes (up to
        `CINEMATIC_BUILD_TIMEOUT_MIN`; the NCCL watchdog is not involved)."""
        if self.local_rank != 0:
            self.barrier()
        try:
            yield self.local_rank == 0
        finally:
            if self.local_rank == 0:
                self.barrier()


class Task(Protocol):
    """What the trainer needs to know about one model family.

    What the trainer guarantees in return:

    - every batch arrives on the training device (`BuildContext.device`): the micro-batches of
      `training_step` and the batches `validate` iterates (tensors inside dicts, lists, tuples and
      dataclasses are moved);
    - `training_step` gets the models as they train: wrapped for DDP under torchrun (call them, do not
      reach into `.module`), in training mode, with gradients on and autocast active;
    - `validate` and `sample` get the unwrapped models (never a DDP wrapper; under FSDP2 the sharded
      modules themselves, so every rank runs them), in eval mode, with the EMA weights swapped in for
      the models that keep an EMA, under `torch.no_grad()` and autocast, and with every random stream
      (Python, numpy, torch, CUDA) forked: random numbers drawn there never change the training run.
      The mapping is a fresh dict; the live weights are back when the call returns.
    """

    name: str
    """The family's task name: the `task` key of its checkpoints, its default run folder, and what
    `Config.training_for` / `Config.section_name` look up."""

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built: ...

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        """Loss of one phase on one micro-batch (on the device). `scratch` is shared by the phases of
        one step (a GAN's generated audio). Never call `backward()` or step an optimizer here."""
        ...

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        """Metrics named "val/<name>" over `loader` (its batches on the device); models unwrapped, EMA
        weights, eval mode, no_grad, forked RNG (see the class docstring). Every rank runs it; rank 0's
        numbers are the ones kept."""
        ...

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        """A few things to look at or listen to; files go under out_dir. Same models and context as
        `validate`; runs on rank 0 only (on every rank under FSDP, the others into a throwaway folder)."""
        ...

    def export_state(self) -> dict[str, Any]:
        """Plain containers/tensors generation needs without the config: vocabularies, statistics."""
        ...
