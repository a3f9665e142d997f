"""The one training loop: runs any task (`cinematic.tasks.base.Task`) on one process or under torchrun.

    result = run_training("music", cfg, Path("data/music"), resume="auto")

One optimizer *step* is: for each phase in order (a GAN: discriminator, then generator) zero that
phase's gradients, run `task.training_step` on each of the `gradient_accumulation_steps` micro-batches
under autocast and back-propagate (loss / number of micro-batches), unscale (fp16), clip the global
gradient norm, check that loss and gradients are finite on every rank, step the optimizer (or skip
it together on every rank) and the phase's scheduler. Then the EMA is updated and, on their steps,
scalars are logged, the run is validated (EMA weights, eval mode, no grad) and sampled, and a
checkpoint is written. See docs/training.md for every setting.

Exact resume: the data order is a pure function of (seed, epoch) and the checkpoint stores the
position inside the epoch, every rank's RNG state, optimizer, scheduler, scaler and EMA state, so
k steps + resume + (N - k) steps gives the same tensors as N steps straight. Validation and sampling
run under a forked RNG so they never shift the training stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import random
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from cinematic.configs import Config, TrainingConfig
from cinematic.configs.loading import TASK_SECTIONS
from cinematic.errors import UserError
from cinematic.tasks.base import BuildContext, Built, Phase, StepOutput
from cinematic.training import checkpointing as ckpt_io
from cinematic.training import distributed as D
from cinematic.training.ema import EMA
from cinematic.training.logging import RunLogger
from cinematic.training.optimizers import (
    build_optimizer,
    build_scheduler,
    load_scheduler_state,
    scheduler_state,
)
from cinematic.utils import atomic_write_bytes

log = logging.getLogger("cinematic.training")


@dataclass
class TrainResult:
    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics_before: dict[str, float] | None
    """Validation before the first step (only with `training.validate_at_start`)."""
    metrics_after: dict[str, float]
    """Validation at the end (empty when the task has no validation set)."""
    step: int


def run_training(task_name: str, cfg: Config, data_dir: Path, resume: str | None = None) -> TrainResult:
    """Train `task_name` on `data_dir` with `cfg` (resume: a checkpoint path, "auto", or None)."""
    from cinematic.tasks import get_task

    task = get_task(task_name)
    trainer = Trainer(task, task_name, cfg, Path(data_dir), resume=resume)
    return trainer.fit()


# ------------------------------------------------------------------------------------------ helpers


def to_device(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside dicts, lists, tuples and dataclass instances (other objects are left as
    they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        moved = {f.name: to_device(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **moved)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, list):
        return [to_device(value, device) for value in obj]
    if isinstance(obj, tuple):
        moved = [to_device(value, device) for value in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else tuple(moved)
    return obj


def batch_len(batch: Any) -> int:
    """Items in a collated batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        values = list(batch.values())
    elif isinstance(batch, list | tuple):
        values = list(batch)
    else:
        return 1
    for value in values:
        if isinstance(value, torch.Tensor | dict | list | tuple):
            return batch_len(value)
    return len(values)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs where bf16 autocast is faster than fp32 (not AVX2-only ones)."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def resolve_amp(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `training.amp` on this device (None: fp32). See docs/training.md."""
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    log.warning(
        "training.amp: true, but this %s has no native bf16: training in fp32 (set amp: bf16 to force it)",
        device.type.upper(),
    )
    return None


@contextlib.contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """Run a block (validation, sampling) without moving any random stream of the training run."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def eval_mode(models: Mapping[str, nn.Module]) -> Iterator[None]:
    was_training = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    try:
        yield
    finally:
        for name, model in models.items():
            model.train(was_training[name])


class EpochSampler(Sampler[int]):
    """`DistributedSampler`'s order (a permutation seeded by seed + epoch, padded to a multiple of the
    world size, every world_size-th item for this rank), or weighted draws with replacement when the
    task gives sample weights, that can also start inside an epoch (exact resume)."""

    def __init__(
        self, size: int, *, seed: int, rank: int = 0, world_size: int = 1, weights: Any | None = None
    ) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(list(weights), dtype=torch.double)
        if self.weights is not None and len(self.weights) != size:
            raise ValueError(f"sample_weights has {len(self.weights)} entries for {size} training items")
        self.num_samples = math.ceil(size / world_size)
        self.total = self.num_samples * world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def epoch_indices(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(
                self.weights, self.total, replacement=True, generator=generator
            ).tolist()
        else:
            order = torch.randperm(self.size, generator=generator).tolist()
            order += order[: self.total - len(order)] * math.ceil(
                (self.total - len(order)) / max(1, len(order))
            )
            order = order[: self.total]
        return order[self.rank : self.total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class _DeviceLoader:
    """A data loader whose batches arrive on the training device (what `Task.validate` iterates)."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # .dataset, .batch_size, ... of the wrapped loader
        return getattr(self.loader, name)


@dataclass
class _PhaseState:
    phase: Phase
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any | None
    container: nn.ModuleDict
    """The phase's (unwrapped) models under one module: the key space of its optimizer state."""

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]


# -------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Builds a task's run and trains it. `fit()` is the whole run; see the module docstring."""

    def __init__(
        self, task: Any, task_name: str, cfg: Config, data_dir: Path, resume: str | None = None
    ) -> None:
        self.task, self.task_name, self.cfg, self.data_dir = task, task_name, cfg, data_dir
        self.tcfg: TrainingConfig = cfg.training_for(task_name)
        self.env = D.init_distributed()
        try:
            self._setup(resume)
        except BaseException:
            D.shutdown(self.env)
            raise

    # --------------------------------------------------------------------------------------- setup

    def _setup(self, resume: str | None) -> None:
        tcfg, env = self.tcfg, self.env
        if self.cfg.logging.logger == "wandb" and importlib.util.find_spec("wandb") is None:
            # Checked on every rank: were only rank 0 to stop, the others would wait at a collective.
            raise UserError(
                "logging.logger is 'wandb' but the wandb package is not installed; install it with "
                "`pip install 'cinematic[wandb]'`, or set logging.logger: tensorboard"
            )
        self.run_name = tcfg.run_name or self.task_name
        self.work_dir = Path(tcfg.work_dir)
        self.run_dir = self.work_dir / self.run_name
        self.ckpt_dir = self.run_dir / "checkpoints"
        checkpoint = self._find_checkpoint(resume)
        if checkpoint is not None:
            self._check_compatible(checkpoint)

        D.set_deterministic(tcfg.deterministic)
        D.seed_everything(tcfg.seed)  # the same on every rank: identical initial weights (FSDP needs it)
        ctx = BuildContext(
            run_dir=self.run_dir,
            cache_dir=self.work_dir / "cache",
            device=env.device,
            rank=env.rank,
            local_rank=env.local_rank,
            world_size=env.world_size,
            restored_state=checkpoint.get("task_state") if checkpoint else None,
            barrier=env.barrier,
        )
        built: Built = self.task.build(self.cfg, self.data_dir, ctx)
        self.built = built
        self.phases = built.resolved_phases()
        self._build_models(built)
        self._build_data(built)
        self._build_optimizers()
        ema_names = built.ema_models if built.ema_models is not None else list(self.models)
        self.ema = EMA({n: self.models[n] for n in ema_names}, tcfg.ema_decay) if tcfg.ema_decay else None

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.nan_streak = 0
        self.nan_total = 0
        self.best_value: float | None = None
        self.bad_validations = 0
        self._last_saved_step = -1
        self._last_validated_step = -1
        self._warned_metric = False
        # What the progress bar shows between log steps (updated every log_every_steps, no device sync).
        self._shown_loss, self._shown_lr, self._shown_rate = float("nan"), 0.0, 0.0
        if checkpoint is not None:
            self._restore(checkpoint)
            log.info("resumed %s at step %d (epoch %d)", self.run_name, self.step, self.epoch)
        else:
            D.seed_everything(D.rank_seed(tcfg.seed, env.rank))
        if env.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.run_dir / "config.yaml", self.cfg.to_yaml().encode("utf-8"))
            ckpt_io.leftover_temp_files(self.ckpt_dir)

    def _find_checkpoint(self, resume: str | None) -> dict[str, Any] | None:
        existing = ckpt_io.existing_checkpoints(self.ckpt_dir)
        if resume is None:
            if existing:
                raise UserError(
                    f"{self.ckpt_dir} already holds checkpoints ({', '.join(p.name for p in existing)}) from an "
                    "earlier run; continue it with --resume auto, or choose another --work_dir "
                    "(or training.run_name) for a new run"
                )
            return None
        if resume != "auto":
            return ckpt_io.load_for_resume(resume)
        # Rank 0 chooses, so every rank resumes from the same file even if one save raced the scan.
        found = ckpt_io.find_resume_checkpoint(self.ckpt_dir) if self.env.is_main_process else None
        path = D.broadcast_object(str(found[0]) if found else None, self.env)
        if path is None:
            log.info("--resume auto: no checkpoint in %s yet, starting a new run", self.ckpt_dir)
            return None
        log.info("--resume auto: continuing from %s", path)
        return found[1] if found else ckpt_io.load_for_resume(path)

    def _check_compatible(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("task") != self.task_name:
            raise UserError(
                f"the checkpoint belongs to task {checkpoint.get('task')!r}, not {self.task_name!r}; "
                f"resume it with `cinematic train {checkpoint.get('task')}`"
            )
        section = TASK_SECTIONS.get(self.task_name)
        old = (checkpoint.get("config") or {}).get(section)
        if section is None or old is None:
            return
        new = self.cfg.to_dict()[section]
        old = {k: v for k, v in old.items() if k != "training"}
        new = {k: v for k, v in new.items() if k != "training"}
        diffs = ckpt_io.config_differences(old, new, f"{section}.")
        if diffs:
            raise UserError(
                "cannot resume: the model configuration differs from the checkpoint's\n  "
                + "\n  ".join(diffs)
                + "\n(resume with the checkpoint's config: --resume PATH without --config, or fix these keys)"
            )

    def _build_models(self, built: Built) -> None:
        self.models: dict[str, nn.Module] = {}
        self.train_models: dict[str, nn.Module] = {}
        # DDP's hooks pair each forward with the next backward. A multi-phase task (a GAN) runs the
        # generator forward in the discriminator phase and its backward in the generator phase, which
        # with gradient accumulation interleaves several forwards and backwards: DDP then reduces the
        # wrong gradients. Those tasks get plain modules and the trainer averages their gradients itself.
        self.manual_grad_sync = (
            self.env.is_distributed and self.tcfg.strategy == "ddp" and len(self.phases) > 1
        )
        for name, model in built.models.items():
            model.to(self.env.device)
            model.train()
            if self.manual_grad_sync:
                D.broadcast_module(model, self.env)
                wrapped = model
            else:
                wrapped = D.wrap_model(model, self.tcfg.strategy, self.env)
            self.models[name] = D.unwrap(wrapped)
            self.train_models[name] = wrapped
        self.fsdp = any(D.is_fsdp(m) for m in self.models.values())
        self.amp_dtype = resolve_amp(self.tcfg.amp, self.env.device)

    def _build_data(self, built: Built) -> None:
        tcfg, env, workers = self.tcfg, self.env, self.cfg.data.num_workers
        size = len(built.train_set)  # type: ignore[arg-type]
        if size == 0:
            raise UserError(
                f"the training set built from {self.data_dir} is empty; add data or check the layout"
            )
        self.sampler = EpochSampler(
            size, seed=tcfg.seed, rank=env.rank, world_size=env.world_size, weights=built.sample_weights
        )
        drop_last = self.sampler.num_samples >= tcfg.batch_size
        loader_rng = torch.Generator()
        loader_rng.manual_seed(D.rank_seed(tcfg.seed, env.rank))
        self.train_loader = DataLoader(
            built.train_set,
            batch_size=tcfg.batch_size,
            sampler=self.sampler,
            collate_fn=built.collate_fn,
            num_workers=workers,
            drop_last=drop_last,
            pin_memory=env.device.type == "cuda",
            # Workers hold copies of the dataset made when they start: a dataset with set_epoch needs
            # fresh workers each epoch to see the new epoch (per-epoch crops and augmentation).
            persistent_workers=workers > 0 and not hasattr(built.train_set, "set_epoch"),
            generator=loader_rng,  # keeps the global torch RNG untouched by iter(loader)
        )
        n = self.sampler.num_samples
        self.batches_per_epoch = n // tcfg.batch_size if drop_last else math.ceil(n / tcfg.batch_size)
        accum = tcfg.gradient_accumulation_steps
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / accum)
        self.total_steps = tcfg.max_steps or tcfg.epochs * self.steps_per_epoch
        self.val_loader = None
        if built.val_set is not None and len(built.val_set) > 0:  # type: ignore[arg-type]
            loader = DataLoader(
                built.val_set,
                batch_size=tcfg.batch_size,
                shuffle=False,
                collate_fn=built.collate_fn,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            self.val_loader = _DeviceLoader(loader, env.device)

    def _build_optimizers(self) -> None:
        self.phase_states: list[_PhaseState] = []
        for phase in self.phases:
            unknown = [n for n in phase.models if n not in self.models]
            if unknown:
                raise ValueError(
                    f"phase {phase.name!r} names unknown models {unknown}; built: {list(self.models)}"
                )
            container = nn.ModuleDict({n: self.models[n] for n in phase.models})
            optimizer = build_optimizer(container.values(), self.tcfg)
            scheduler = build_scheduler(optimizer, self.tcfg, self.total_steps, self.steps_per_epoch)
            scaler = None
            if self.amp_dtype == torch.float16:
                scaler = torch.amp.GradScaler(self.env.device.type)
            self.phase_states.append(_PhaseState(phase, optimizer, scheduler, scaler, container))

    # ---------------------------------------------------------------------------------------- state

    def _full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Full (unsharded) weights on CPU; a collective under FSDP, so every rank calls it."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(
                model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def _load_model(self, model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
        try:
            if self.fsdp:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
            else:
                model.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(
                f"cannot load the checkpoint's {what} weights into the model built now: {err}"
            ) from None

    def _optimizer_state(self, ps: _PhaseState) -> dict[str, Any]:
        """Full optimizer state keyed by parameter name (`<model>.<param>`), whatever the strategy, so a
        checkpoint moves between single-process, DDP and FSDP runs (a collective under FSDP)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=self.fsdp)
        return get_optimizer_state_dict(ps.container, ps.optimizer, options=options)

    def _load_optimizer(self, ps: _PhaseState, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        try:
            set_optimizer_state_dict(ps.container, ps.optimizer, optim_state_dict=state, options=options)
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(
                f"cannot restore the optimizer state of phase {ps.phase.name!r} from the checkpoint "
                f"({type(err).__name__}: {err}); the models' parameters changed?"
            ) from None

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint dict (complete on rank 0; every rank must call it: it gathers)."""
        rng = D.gather_objects(ckpt_io.capture_rng_state(), self.env)
        if not self.env.is_main_process and not self.fsdp:
            return {}  # nothing else is collective: only rank 0 needs the copies
        model = {name: self._full_state_dict(m) for name, m in self.models.items()}
        ema: dict[str, Any] = {}
        if self.ema is not None:
            with self.ema.swapped_in():
                ema = {name: self._full_state_dict(self.models[name]) for name in self.ema.params}
        return {
            "format_version": ckpt_io.FORMAT_VERSION,
            "task": self.task_name,
            "config": self.cfg.to_dict(),
            "data_dir": str(self.data_dir),
            "model": model,
            "ema": ema,
            "ema_updates": self.ema.num_updates if self.ema is not None else 0,
            "task_state": self.task.export_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.env.world_size,
            "optimizers": {ps.phase.name: self._optimizer_state(ps) for ps in self.phase_states},
            "schedulers": {ps.phase.name: scheduler_state(ps.scheduler) for ps in self.phase_states},
            "scalers": {ps.phase.name: ps.scaler.state_dict() for ps in self.phase_states if ps.scaler},
            "rng": rng,
            "nan_skips": {"consecutive": self.nan_streak, "total": self.nan_total},
            "best": {"value": self.best_value, "bad_validations": self.bad_validations},
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            saved_ema = checkpoint.get("ema") or {}
            for name in self.ema.params:
                if name in saved_ema:
                    self._load_model(self.models[name], saved_ema[name], f"EMA {name!r}")
                    self.ema.copy_from_models()
            self.ema.num_updates = int(checkpoint.get("ema_updates", 0))
        for name, model in self.models.items():
            if name not in checkpoint["model"]:
                raise UserError(
                    f"the checkpoint has no weights for model {name!r} (it has {list(checkpoint['model'])})"
                )
            self._load_model(model, checkpoint["model"][name], repr(name))
        if self.ema is not None and not checkpoint.get("ema"):
            self.ema.copy_from_models()  # EMA turned on when resuming: start it at the loaded weights
        for ps in self.phase_states:
            name = ps.phase.name
            if name in checkpoint.get("optimizers", {}):
                self._load_optimizer(ps, checkpoint["optimizers"][name])
            if name in checkpoint.get("schedulers", {}):
                load_scheduler_state(ps.scheduler, checkpoint["schedulers"][name])
            if ps.scaler is not None and name in checkpoint.get("scalers", {}):
                ps.scaler.load_state_dict(checkpoint["scalers"][name])
        self.step = int(checkpoint["step"])
        self.epoch = int(checkpoint.get("epoch", 0))
        self.batch_in_epoch = int(checkpoint.get("batch_in_epoch", 0))
        nan = checkpoint.get("nan_skips") or {}
        self.nan_streak, self.nan_total = int(nan.get("consecutive", 0)), int(nan.get("total", 0))
        best = checkpoint.get("best") or {}
        self.best_value = best.get("value")
        self.bad_validations = int(best.get("bad_validations", 0))
        self._last_saved_step = self.step
        rng = checkpoint.get("rng") or []
        if self.env.rank < len(rng):
            ckpt_io.restore_rng_state(rng[self.env.rank])
        else:  # more ranks than the run that saved: new ranks get fresh, distinct streams
            D.seed_everything(D.rank_seed(self.tcfg.seed + self.step, self.env.rank))

    # -------------------------------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        env = self.env
        self.logger = RunLogger(
            self.cfg,
            self.run_name,
            self.total_steps,
            self.step,
            self.built.throughput_unit,
            env.is_main_process,
        )
        try:
            return self._fit()
        finally:
            self.logger.close()
            D.shutdown(env)

    def _fit(self) -> TrainResult:
        metrics_before = self.validate() if self.tcfg.validate_at_start else None
        metrics_after: dict[str, float] | None = None
        self._window_start = time.perf_counter()
        self._window: dict[str, Any] = {"items": 0, "steps": 0, "loss": {}, "metrics": {}}
        stop = self.step >= self.total_steps
        while not stop:
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_start(self.batch_in_epoch * self.tcfg.batch_size)
            if hasattr(self.built.train_set, "set_epoch"):
                self.built.train_set.set_epoch(self.epoch)
            batches = iter(self.train_loader)
            while not stop:
                group = self._next_group(batches)
                if not group:
                    break
                self.batch_in_epoch += len(group)
                self.train_step(group)
                stop, metrics = self._after_step()
                if metrics is not None:
                    metrics_after = metrics
            if not stop and self.batch_in_epoch >= self.batches_per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
        return self._finish(metrics_before, metrics_after)

    def _next_group(self, batches: Iterator[Any]) -> list[Any]:
        group = []
        for _ in range(self.tcfg.gradient_accumulation_steps):
            batch = next(batches, None)
            if batch is None:
                break
            group.append(batch)
        return group

    def _finish(
        self, metrics_before: dict[str, float] | None, last_metrics: dict[str, float] | None
    ) -> TrainResult:
        # The last validation counts as final only if it ran at this very step.
        if self.val_loader is not None and self._last_validated_step != self.step:
            last_metrics = self.validate()
            improved, _ = self._after_validation(last_metrics)
            if improved:
                self.save(periodic=False, best=True)
        if self._last_saved_step != self.step:
            self.save(periodic=False)
        best = self.ckpt_dir / "best.pth"
        return TrainResult(
            run_dir=self.run_dir,
            last_checkpoint=self.ckpt_dir / "last.pth",
            best_checkpoint=best if best.is_file() else None,
            metrics_before=metrics_before,
            metrics_after=last_metrics or {},
            step=self.step,
        )

    def _after_step(self) -> tuple[bool, dict[str, float] | None]:
        """Logging, validation, checkpointing and stop decisions after optimizer step `self.step`."""
        step, tcfg = self.step, self.tcfg
        self._log_step()
        metrics = None
        improved = False
        stop = step >= self.total_steps
        if self.val_loader is not None and (step % tcfg.validate_every_steps == 0 or stop):
            metrics = self.validate()
            improved, early_stop = self._after_validation(metrics)
            stop = stop or early_stop
        periodic = step % tcfg.checkpoint_every_steps == 0
        if periodic or improved or stop:
            self.save(periodic=periodic, best=improved)
        return stop, metrics

    # ------------------------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp_dtype)

    @contextlib.contextmanager
    def _no_sync(self, enabled: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on every micro-batch but the last of an accumulation group."""
        if not enabled or not self.env.is_distributed:
            yield
            return
        with contextlib.ExitStack() as stack:
            for model in self.train_models.values():
                if isinstance(model, nn.parallel.DistributedDataParallel):
                    stack.enter_context(model.no_sync())
                elif D.is_fsdp(model):
                    model.set_requires_gradient_sync(False)
                    stack.callback(model.set_requires_gradient_sync, True)
            yield

    def train_step(self, group: list[Any]) -> None:
        """One optimizer step of every phase over an accumulation group of micro-batches."""
        device = self.env.device
        group = [to_device(batch, device) for batch in group]
        scratches: list[dict[str, Any]] = [{} for _ in group]
        stepped_any = False
        skipped_any = False
        for ps in self.phase_states:
            stepped = self._phase_step(ps, group, scratches)
            stepped_any |= stepped
            skipped_any |= not stepped
        self.step += 1
        if skipped_any:
            self.nan_streak += 1
            self.nan_total += 1
            self.logger.message(
                f"step {self.step}: non-finite loss or gradients, update skipped ({self.nan_streak} in a row)"
            )
            if self.nan_streak >= self.tcfg.max_nan_skips:
                raise UserError(
                    f"training stopped at step {self.step}: {self.nan_streak} consecutive steps had a non-finite "
                    "loss or gradients (training.max_nan_skips). Lower training.learning_rate, set or lower "
                    "training.gradient_clip_val, increase training.warmup_steps, try training.amp: false, "
                    "and check the data for silent or broken items"
                )
        else:
            self.nan_streak = 0
        if stepped_any and self.ema is not None:
            self.ema.update()

    def _phase_step(self, ps: _PhaseState, group: list[Any], scratches: list[dict[str, Any]]) -> bool:
        """Forward/backward/step of one phase; False when the update was skipped (non-finite)."""
        ps.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.env.device)
        items = 0
        window = self._window
        for index, (batch, scratch) in enumerate(zip(group, scratches)):
            last = index == len(group) - 1
            with self._no_sync(enabled=not last):
                with self._autocast():
                    out: StepOutput = self.task.training_step(
                        self.train_models, batch, ps.phase.name, scratch
                    )
                loss = out.loss.float() / len(group)
                (ps.scaler.scale(loss) if ps.scaler is not None else loss).backward()
            loss_sum += out.loss.detach().float()
            items += out.num_items if out.num_items is not None else batch_len(batch)
            for key, value in out.metrics.items():
                value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
                window["metrics"][key] = window["metrics"].get(key, 0.0) + value / len(group)
        if self.manual_grad_sync:
            D.average_gradients(ps.params, self.env)
        if ps.scaler is not None:
            ps.scaler.unscale_(ps.optimizer)
        grad_norm = self._clip(ps)
        # fp16: an inf gradient is the scaler's business (it skips and lowers the scale), not a NaN skip.
        bad = ~torch.isfinite(loss_sum)
        if ps.scaler is None:
            bad = bad | ~torch.isfinite(grad_norm)
        skip = D.any_true(bool(bad.item()), self.env)
        window.setdefault("lr", {})[ps.phase.name] = ps.optimizer.param_groups[0]["lr"]  # this step's rate
        if skip:
            ps.optimizer.zero_grad(set_to_none=True)
            if ps.scaler is not None:
                ps.scaler.update()  # closes this step's unscale_ (and lowers the scale after an inf)
        elif ps.scaler is not None:
            ps.scaler.step(ps.optimizer)
            ps.scaler.update()
        else:
            ps.optimizer.step()
        with warnings.catch_warnings():
            # A skipped update (NaN guard, fp16 scaler) still advances the schedule: the step is spent.
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            ps.scheduler.step()
        if ps is self.phase_states[0]:
            window["items"] += items
            window["steps"] += 1
        losses = window["loss"].setdefault(ps.phase.name, [])
        losses.append(loss_sum / len(group))
        window.setdefault("grad_norm", {})[ps.phase.name] = grad_norm.detach()
        return not skip

    def _clip(self, ps: _PhaseState) -> torch.Tensor:
        """Clip the phase's global gradient norm (after unscaling); returns the norm before clipping."""
        grads = [p.grad for p in ps.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.env.device)
        clip = self.tcfg.gradient_clip_val
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(ps.params, clip, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor already reduced over the shards
            norm = norm.full_tensor()
        return norm

    # ----------------------------------------------------------------------------------- logging

    def _log_step(self) -> None:
        window = self._window
        step, last_phase = self.step, self.phases[-1].name
        log_now = step % self.cfg.logging.log_every_steps == 0 or step >= self.total_steps
        if not self.env.is_main_process or (not log_now and self.logger.bar is None):
            if log_now:
                self._reset_window()
            return
        if not log_now:
            # Progress-bar tick without a device sync; loss and lr shown as of the last log line.
            self.logger.progress(step, self._shown_loss, self._shown_lr, self._shown_rate)
            return
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        rate = float(window["items"]) * self.env.world_size / elapsed
        scalars: dict[str, float] = {}
        single = len(self.phase_states) == 1
        for ps in self.phase_states:
            name = ps.phase.name
            suffix = "" if single else f"_{name}"
            losses = window["loss"].get(name) or []
            if losses:
                scalars[f"train/loss{suffix}"] = float(torch.stack(losses).mean())
            scalars[f"train/lr{suffix}"] = window.get("lr", {}).get(name, ps.optimizer.param_groups[0]["lr"])
            if name in window.get("grad_norm", {}):
                scalars[f"train/grad_norm{suffix}"] = float(window["grad_norm"][name])
        if not single and f"train/loss_{last_phase}" in scalars:
            scalars["train/loss"] = scalars[f"train/loss_{last_phase}"]
        for key, value in window["metrics"].items():
            scalars[f"train/{key}"] = float(value) / max(1, window["steps"])
        scalars[f"train/{self.built.throughput_unit}_per_s"] = rate
        scalars["train/nan_skips"] = float(self.nan_total)
        scalars["train/epoch"] = float(self.epoch)
        self.logger.scalars(scalars, step)
        self._shown_loss = scalars.get("train/loss", float("nan"))
        self._shown_lr = scalars.get(f"train/lr{'' if single else '_' + last_phase}", 0.0)
        self._shown_rate = rate
        self.logger.progress(step, self._shown_loss, self._shown_lr, rate)
        self._reset_window()

    def _reset_window(self) -> None:
        self._window = {"items": 0, "steps": 0, "loss": {}, "metrics": {}}
        self._window_start = time.perf_counter()

    # ---------------------------------------------------------------------- validation and samples

    def validate(self) -> dict[str, float]:
        """Validation metrics with the EMA weights, in eval mode, without gradients (every rank runs it:
        FSDP's forward is a collective); rank 0's numbers are broadcast so every rank decides alike."""
        self._last_validated_step = self.step
        if self.val_loader is None or not hasattr(self.task, "validate"):
            return {}
        start = time.perf_counter()
        with self._inference_models() as models:
            raw = self.task.validate(models, self.val_loader)
        metrics = {(k if k.startswith("val/") else f"val/{k}"): float(v) for k, v in raw.items()}
        metrics = D.broadcast_object(metrics, self.env)  # type: ignore[assignment]
        self.logger.scalars(metrics, self.step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.logger.message(f"step {self.step}: {shown} ({time.perf_counter() - start:.1f} s)")
        self._sample()
        return metrics

    @contextlib.contextmanager
    def _inference_models(self) -> Iterator[dict[str, nn.Module]]:
        ema = self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()
        with forked_rng(self.env.device), ema, eval_mode(self.models), torch.no_grad(), self._autocast():
            yield self.models

    def _sample(self) -> None:
        """The task's samples: rank 0 alone, except under FSDP where every rank must run the forward
        (the other ranks write into a temporary folder that is thrown away)."""
        if not hasattr(self.task, "sample") or not (self.env.is_main_process or self.fsdp):
            return
        with contextlib.ExitStack() as stack:
            if self.env.is_main_process:
                out_dir = self.run_dir / "samples" / f"step_{self.step:07d}"
                out_dir.mkdir(parents=True, exist_ok=True)
            else:
                out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            try:
                with self._inference_models() as models:
                    media = self.task.sample(models, self.step, out_dir)
            except Exception as err:  # a sample must never cost a long run
                if self.fsdp:
                    raise
                log.warning("task.sample failed at step %d: %s: %s", self.step, type(err).__name__, err)
                return
            self.logger.media(list(media or []), self.step)

    def _after_validation(self, metrics: dict[str, float]) -> tuple[bool, bool]:
        """(improved, stop early) for `training.best_metric` and `early_stopping_patience`."""
        key, mode = self.tcfg.best_metric, self.tcfg.best_mode
        if key not in metrics:
            if metrics and not self._warned_metric:
                log.warning(
                    "training.best_metric %r is not among the validation metrics %s; best.pth is not kept",
                    key,
                    sorted(metrics),
                )
                self._warned_metric = True
            return False, False
        value = metrics[key]
        better = self.best_value is None or (
            value < self.best_value if mode == "min" else value > self.best_value
        )
        if better and math.isfinite(value):
            self.best_value, self.bad_validations = value, 0
            return True, False
        self.bad_validations += 1
        patience = self.tcfg.early_stopping_patience
        if patience is not None and self.bad_validations >= patience:
            best = "none finite" if self.best_value is None else f"{self.best_value:.4g}"
            self.logger.message(
                f"early stop at step {self.step}: {key} has not improved for "
                f"{self.bad_validations} validations (best {best})"
            )
            return False, True
        return False, False

    # ------------------------------------------------------------------------------ checkpoints

    def save(self, periodic: bool, best: bool = False) -> None:
        """Write step_<n>.pth (periodic, when keep_last_k > 0), last.pth, and best.pth (on improvement)."""
        state = self.checkpoint_state()  # every rank: FSDP gathers, RNG states are collected
        self._last_saved_step = self.step
        if not self.env.is_main_process:
            return
        last = self.ckpt_dir / "last.pth"
        if periodic and self.tcfg.keep_last_k > 0:
            step_path = self.ckpt_dir / f"step_{self.step}.pth"
            ckpt_io.atomic_save(state, step_path)
            ckpt_io.atomic_copy(step_path, last)
            ckpt_io.prune_step_files(self.ckpt_dir, self.tcfg.keep_last_k)
        else:
            ckpt_io.atomic_save(state, last)
        if best:
            ckpt_io.atomic_copy(last, self.ckpt_dir / "best.pth")
