"""The one training loop: runs any task (`cinematic.training.task.Task`) on one process or under torchrun.

    result = run_training(task, cfg, Path("data/music"), resume="auto")

One optimizer *step* is: for each phase in order (a GAN: discriminator, then generator) zero that
phase's gradients, run `task.training_step` on each of the `gradient_accumulation_steps` micro-batches
under autocast and back-propagate (loss / number of micro-batches), unscale (fp16), clip the global
gradient norm, check that loss and gradients are finite on every rank, step the optimizer (or skip
it together on every rank) and the phase's scheduler. Then the EMA is updated and, on their steps,
scalars are logged, the run is validated (EMA weights, eval mode, no grad) and sampled, and a
checkpoint is written. See docs/training.md for every setting.

The run's state lives in small stateful parts (`state_dict()` / `load_state_dict()`): `TrainState`
(step, epoch, position, counters), the model weights, EMA, optimizers, schedulers, grad scalers and
RNG streams, collected by a `CheckpointManager` (`cinematic.training.checkpoint`).

Exact resume: the data order is a pure function of (seed, epoch) (`cinematic.data.sampler`) and the
checkpoint stores the position inside the epoch, every rank's RNG state, optimizer, scheduler, scaler
and EMA state, so k steps + resume + (N - k) steps gives the same tensors as N steps straight.
Validation and sampling run under a forked RNG so they never shift the training stream.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cinematic.configs import Config, TrainingConfig
from cinematic.data.skips import SkippedFiles
from cinematic.errors import UserError
from cinematic.training import checkpointing as ckpt_io
from cinematic.training import distributed as D
from cinematic.training.checkpoint import (
    ByName,
    CheckpointManager,
    EMAWeights,
    ModelWeights,
    OptimizerState,
    RNGStreams,
    Saved,
    SchedulerState,
    check_compatible,
)
from cinematic.training.ema import EMA
from cinematic.training.loaders import DataPosition, build_loaders
from cinematic.training.logging import Heartbeat, RunLogger, console_logging, show_progress_bar
from cinematic.training.metrics import LiveLoss, StepWindow
from cinematic.training.phases import (
    PendingStep,
    PhaseState,
    build_phases,
    done_parameters,
    frozen,
    poison_gradients,
    step_unless,
)
from cinematic.training.preemption import PreemptionWatch
from cinematic.training.runtime import (  # noqa: F401  (re-exported: the trainer's public helpers)
    DeviceLoader,
    FixedShapes,
    batch_len,
    cpu_has_native_bf16,
    eval_mode,
    forked_rng,
    resolve_amp,
    to_device,
)
from cinematic.training.speed import apply_levers
from cinematic.training.state import TrainState
from cinematic.training.task import BuildContext, Built, StepOutput
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


def run_training(task: Any, cfg: Config, data_dir: Path, resume: str | None = None) -> TrainResult:
    """Train `task` (a `Task` object; its `name` picks the config section and the run folder) on
    `data_dir` with `cfg` (resume: a checkpoint path, "auto", or None)."""
    return Trainer(task, cfg, Path(data_dir), resume=resume).fit()


# -------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Builds a task's run and trains it. `fit()` is the whole run; see the module docstring."""

    def __init__(self, task: Any, cfg: Config, data_dir: Path, resume: str | None = None) -> None:
        self.task, self.task_name, self.cfg, self.data_dir = task, task.name, cfg, Path(data_dir)
        self.tcfg: TrainingConfig = cfg.training_for(self.task_name)
        self.env = D.init_distributed()
        # Rank 0 tells what it is doing when a phase runs long (docs/training.md, "Logging").
        self.heartbeat = Heartbeat(cfg.logging.heartbeat_seconds, enabled=self.env.is_main_process)
        self.live: LiveLoss | None = None
        try:
            with self._console():
                self._setup(resume)
        except BaseException:
            D.shutdown(self.env)
            raise

    @contextlib.contextmanager
    def _console(self) -> Iterator[None]:
        """Log records through tqdm.write while bars may be up (rank 0), and the heartbeat running."""
        bars = self.env.is_main_process and show_progress_bar(self.cfg)
        with console_logging(bars), self.heartbeat.running():
            yield

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
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, tcfg.keep_last_k)
        if resume is not None:
            self.heartbeat.doing("reading the checkpoint")
        checkpoint = self.checkpoints.find(resume)
        if checkpoint is not None:
            check_compatible(checkpoint, self.task_name, self.cfg)

        D.set_deterministic(tcfg.deterministic)
        D.enable_tf32(env.device, tcfg.deterministic)
        D.seed_everything(tcfg.seed)  # the same on every rank: identical initial weights (FSDP needs it)
        ctx = BuildContext(
            run_dir=self.run_dir,
            cache_dir=self.work_dir / "cache",
            device=env.device,
            rank=env.rank,
            local_rank=env.local_rank,
            world_size=env.world_size,
            restored_state=checkpoint.get("task_state") if checkpoint else None,
            barrier=env.wait_for_others,  # long one-sided waits: not the process group's timeout
            skipped=SkippedFiles(strict=self.cfg.data.strict),
        )
        what = f"building the {self.task_name} run (data, features, models)"
        if env.is_main_process:
            log.info("%s…", what)
        self.heartbeat.doing(what)
        built: Built = self.task.build(self.cfg, self.data_dir, ctx)
        self.skipped = ctx.skipped
        self.built = built
        self.phases = built.resolved_phases()
        self._build_models(built)
        loaders = build_loaders(built, tcfg, self.cfg.data.num_workers, env, self.data_dir)
        self.sampler, self.epoch_set = loaders.sampler, loaders.epoch_set
        self.train_loader, self.val_loader = loaders.train, loaders.val
        self.batches_per_epoch, self.steps_per_epoch = loaders.batches_per_epoch, loaders.steps_per_epoch
        self.total_steps = loaders.total_steps
        fp16 = self.env.device.type if self.amp_dtype == torch.float16 else None
        self.phase_states = build_phases(
            self.phases, self.models, tcfg, self.total_steps, self.steps_per_epoch, scaler_device=fp16
        )
        ema_names = built.ema_models if built.ema_models is not None else list(self.models)
        self.ema = EMA({n: self.models[n] for n in ema_names}, tcfg.ema_decay) if tcfg.ema_decay else None

        self.state = TrainState()
        self.preemption = PreemptionWatch(env)
        self._pending: list[PendingStep] = []
        # Reading a step's skip flags waits for the device: on CUDA they are read one step later (by
        # then the device has finished that step), on the CPU at once. See `_settle`.
        self.flag_lag = 1 if env.device.type == "cuda" else 0
        # cudnn.benchmark once the first micro-batches show fixed shapes (CUDA, not deterministic).
        wanted = env.device.type == "cuda" and not tcfg.deterministic and not torch.backends.cudnn.benchmark
        self._shapes = FixedShapes() if wanted else None
        self._register_checkpoint_parts()
        self._last_validated_step = -1
        self._warned_metric = False
        self.heartbeat.total = self.total_steps
        if checkpoint is not None:
            self.checkpoints.load_state_dict(checkpoint)
            self.checkpoints.last_saved_step = self.state.step
            log.info("resumed %s at step %d (epoch %d)", self.run_name, self.state.step, self.state.epoch)
        else:
            D.seed_everything(D.rank_seed(tcfg.seed, env.rank))
        if env.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.run_dir / "config.yaml", self.cfg.to_yaml().encode("utf-8"))
            self.skipped.write(self.run_dir)
            ckpt_io.leftover_temp_files(self.checkpoints.ckpt_dir)
        self.heartbeat.doing(None)

    def _register_checkpoint_parts(self) -> None:
        """The checkpoint's pieces (layout in docs/training.md), restored in this order: the weights
        before the EMA (which may start from them), the train state before the RNG streams."""
        add, fsdp = self.checkpoints.register, self.fsdp
        self.checkpoints.sharded = fsdp  # DCP shards, any world size (sharded.py)
        identity = {
            "format_version": ckpt_io.FORMAT_VERSION,
            "task": self.task_name,
            "data_dir": str(self.data_dir),
            "world_size": self.env.world_size,
        }
        add(None, Saved(lambda: {**identity, "config": self.cfg.to_dict()}))
        add("model", ModelWeights(self.models, fsdp), collective=fsdp)
        add(None, EMAWeights(self.ema, self.models, fsdp), collective=fsdp)
        add("task_state", Saved(self.task.export_state))
        add(None, self.state)
        phases = self.phase_states
        optimizers = {
            ps.phase.name: OptimizerState(ps.container, ps.optimizer, fsdp, ps.phase.name) for ps in phases
        }
        add("optimizers", ByName(optimizers), collective=fsdp)
        add("schedulers", ByName({ps.phase.name: SchedulerState(ps.scheduler) for ps in phases}))
        add("scalers", ByName({ps.phase.name: ps.scaler for ps in phases if ps.scaler is not None}))
        add("rng", RNGStreams(self.env, lambda: self.tcfg.seed + self.state.step), collective=True)
        add(None, DataPosition(self.sampler, self.state, self.tcfg.batch_size, self.batches_per_epoch))

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
        self.amp_dtype = resolve_amp(self.tcfg.amp, self.env.device)
        fsdp = self.env.is_distributed and self.tcfg.strategy == "fsdp"
        apply_levers(built.models, self.tcfg, self.env.device, fsdp)  # compile, activation checkpointing
        for name, model in built.models.items():
            model.to(self.env.device)
            model.train()
            if self.manual_grad_sync:
                D.broadcast_module(model, self.env)
                wrapped = model
            else:
                wrapped = D.wrap_model(model, self.tcfg.strategy, self.env, self.amp_dtype)
            self.models[name] = D.unwrap(wrapped)
            self.train_models[name] = wrapped
        self.fsdp = any(D.is_fsdp(m) for m in self.models.values())
        self.frozen_in_phase = done_parameters(self.phases, built.models)

    # -------------------------------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        env = self.env
        try:
            with self._console():
                self.logger = RunLogger(
                    self.cfg,
                    self.run_name,
                    self.total_steps,
                    self.state.step,
                    self.built.throughput_unit,
                    env.is_main_process,
                    self.heartbeat,
                )
                try:
                    if self.logger.bar is not None:
                        self.live = LiveLoss(env.device, [phase.name for phase in self.phases])
                    with self.preemption.installed():  # SIGTERM/SIGUSR1: checkpoint and exit 75
                        return self._fit()
                finally:
                    self.heartbeat.stop()  # before the bar it refreshes goes
                    self.logger.close()
        finally:
            D.shutdown(env)

    def _fit(self) -> TrainResult:
        state = self.state
        metrics_before = self.validate() if self.tcfg.validate_at_start else None
        metrics_after: dict[str, float] | None = None
        self.window = StepWindow([phase.name for phase in self.phases])
        stop = state.step >= self.total_steps
        # A step's time, for the heartbeat, runs from the end of the previous one: starting the loader
        # workers of a new epoch and fetching the batches count in.
        heartbeat, first = self.heartbeat, True
        heartbeat.step_label = "first step (warm-up)"
        if not stop:
            if self.env.is_main_process:
                log.info("%s…", heartbeat.step_label)
            heartbeat.begin_step(state.step + 1)
        while not stop:
            self.sampler.set_epoch(state.epoch)
            self.sampler.set_start(state.batch_in_epoch * self.tcfg.batch_size)
            if self.epoch_set is not None:
                self.epoch_set.set_epoch(state.epoch)
            batches = iter(self.train_loader)
            while not stop:
                group = list(itertools.islice(batches, self.tcfg.gradient_accumulation_steps))
                if not group:
                    break
                state.batch_in_epoch += len(group)
                self.train_step(group)
                if first:
                    first, heartbeat.step_label = False, "training"
                    self.logger.first_step_done(time.perf_counter() - heartbeat.since)
                stop, metrics = self._after_step()
                if metrics is not None:
                    metrics_after = metrics
                if not stop:
                    heartbeat.begin_step(state.step + 1)
            if not stop and state.batch_in_epoch >= self.batches_per_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
        return self._finish(metrics_before, metrics_after)

    def _finish(
        self, metrics_before: dict[str, float] | None, last_metrics: dict[str, float] | None
    ) -> TrainResult:
        self._settle()
        step = self.state.step
        # The last validation counts as final only if it ran at this very step.
        if self.val_loader is not None and self._last_validated_step != step:
            last_metrics = self.validate()
            improved, _ = self._after_validation(last_metrics)
            if improved:
                self._save(step, periodic=False, best=True)
        if self.checkpoints.last_saved_step != step:
            self._save(step, periodic=False)
        best = self.checkpoints.best_path
        return TrainResult(
            run_dir=self.run_dir,
            last_checkpoint=self.checkpoints.last_path,
            best_checkpoint=best if best.is_file() else None,
            metrics_before=metrics_before,
            metrics_after=last_metrics or {},
            step=step,
        )

    def _after_step(self) -> tuple[bool, dict[str, float] | None]:
        """Logging, validation, checkpointing and stop decisions after optimizer step `state.step`."""
        step, tcfg = self.state.step, self.tcfg
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
            self._save(step, periodic=periodic, best=improved)
        if not stop and self.preemption.agreed():  # a signal on any rank: every rank saves and leaves
            if self.checkpoints.last_saved_step != step:
                self._save(step, periodic=False)
            self.preemption.leave(step, self.checkpoints.last_path, self.tcfg.requeue)
        return stop, metrics

    def _save(self, step: int, periodic: bool, best: bool = False) -> None:
        self._settle()  # the counters and the EMA of every step so far
        self.heartbeat.doing("saving a checkpoint")
        self.checkpoints.save(step, periodic=periodic, best=best)

    # ------------------------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp_dtype)

    def train_step(self, group: list[Any]) -> None:
        """One optimizer step of every phase over an accumulation group of micro-batches."""
        state = self.state
        group = [to_device(batch, self.env.device) for batch in group]
        if self._shapes is not None and (fixed := self._shapes.observe(group)) is not None:
            self._shapes = None
            if fixed and D.enable_cudnn_benchmark(self.tcfg.deterministic) and self.env.is_main_process:
                log.info("fixed batch shapes: cudnn.benchmark on")
        scratches: list[dict[str, Any]] = [{} for _ in group]
        flags, shown = [], []
        for index, ps in enumerate(self.phase_states):
            flag, phase_loss = self._phase_step(ps, group, scratches, index)
            flags.append(flag)
            shown.append(phase_loss)
        state.step += 1
        stacked = flags[0].reshape(1) if len(flags) == 1 else torch.stack(flags)
        self._pending.append(PendingStep.record(state.step, stacked, shown))
        if len(self._pending) > self.flag_lag:
            self._settle()

    def _settle(self) -> None:
        """Act on the skip flags of the steps taken so far: count skipped steps (a step whose update was
        skipped in any phase) and stop after `max_nan_skips` in a row, update the EMA after every step
        that was not skipped (docs/training.md: a step skipped in one GAN phase does not move it), feed
        the progress bar. Called before anything changes the weights again (the next step's first
        optimizer update), before logging, validating and saving, and at the end: so on CUDA, where the
        flags are read a step late, the abort comes at most one step late, and the EMA, the counters and
        every checkpoint are exactly as if each step had been read at once."""
        state = self.state
        while self._pending:
            pending = self._pending.pop(0)
            skipped = pending.read()
            if self.live is not None:
                for (phase, loss, items), skip in zip(pending.shown, skipped):
                    self.live.add(phase, loss, items, skip)
            if not any(skipped):
                state.nan_streak = 0
                if self.ema is not None:
                    self.ema.update()
                continue
            state.nan_streak += 1
            state.nan_total += 1
            self.logger.message(
                f"step {pending.step}: non-finite loss or gradients, update skipped ({state.nan_streak} in a row)"
            )
            if state.nan_streak >= self.tcfg.max_nan_skips:
                self._pending.clear()
                raise UserError(
                    f"training stopped at step {pending.step}: {state.nan_streak} consecutive steps had a "
                    "non-finite loss or gradients (training.max_nan_skips). Lower training.learning_rate, set "
                    "or lower training.gradient_clip_val, increase training.warmup_steps, try training.amp: "
                    "false, and check the data for silent or broken items"
                )

    def _phase_step(
        self, ps: PhaseState, group: list[Any], scratches: list[dict[str, Any]], index: int
    ) -> tuple[torch.Tensor, tuple[str, torch.Tensor, Any]]:
        """Forward/backward/step of one phase. Returns its skip flag, a float32 tensor on the device (1:
        the update was skipped for a non-finite loss or gradient, the same on every rank), and what the
        progress bar shows of it. Nothing here waits for the device when the optimizer is fused."""
        env = self.env
        ps.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=env.device)
        items = 0
        with frozen(self.frozen_in_phase[index]):
            for micro, (batch, scratch) in enumerate(zip(group, scratches)):
                with D.no_sync(self.train_models.values(), self.env, enabled=micro < len(group) - 1):
                    with self._autocast():
                        out: StepOutput = self.task.training_step(
                            self.train_models, batch, ps.phase.name, scratch
                        )
                    loss = out.loss.float() / len(group)
                    (ps.scaler.scale(loss) if ps.scaler is not None else loss).backward()
                loss_sum += out.loss.detach().float()
                items += out.num_items if out.num_items is not None else batch_len(batch)
                self.window.add_metrics(out.metrics, len(group))
        if self.manual_grad_sync:
            D.average_gradients(ps.params, env)
        scaler = ps.scaler
        if scaler is not None:
            # fp16: an inf gradient is the scaler's business (it skips and lowers the scale), not a NaN
            # skip. A non-finite loss on any rank is: it makes the scaler skip on every rank.
            skip = D.max_over_ranks_((~torch.isfinite(loss_sum)).float(), env)
            poison_gradients(ps.params, skip)
            scaler.unscale_(ps.optimizer)
            grad_norm = ps.clip_gradients(self.tcfg.gradient_clip_val, env.device)
        else:
            grad_norm = ps.clip_gradients(self.tcfg.gradient_clip_val, env.device)
            skip = D.max_over_ranks_((~(torch.isfinite(loss_sum) & torch.isfinite(grad_norm))).float(), env)
        if index == 0:
            self._settle()  # the previous step's flags (read late on CUDA), before the weights change
        lr = ps.optimizer.param_groups[0]["lr"]  # this step's rate
        if scaler is not None:
            scaler.step(ps.optimizer)  # a fused optimizer takes the scaler's inf flag on the device
            scaler.update()  # lowers the scale after an inf
        else:
            step_unless(ps.optimizer, skip)
        with warnings.catch_warnings():
            # A skipped update (NaN guard, fp16 scaler) still advances the schedule: the step is spent.
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            ps.scheduler.step()
        mean_loss = loss_sum / len(group)
        self.window.add_phase(ps.phase.name, mean_loss, lr, grad_norm, items)
        return skip, (ps.phase.name, mean_loss, items)

    def _log_step(self) -> None:
        step = self.state.step
        log_now = step % self.cfg.logging.log_every_steps == 0 or step >= self.total_steps
        if log_now:
            self._settle()  # train/nan_skips of every step so far
        live = self.live
        if live is not None:  # the bar (rank 0): new figures at most every 0.5 s (one device sync)
            if live.due() or step >= self.total_steps:
                loss, rate = live.read(self.env.world_size)
                lr = self.window.lr.get(self.phases[-1].name, 0.0)
                self.logger.bar_figures(self.state.epoch, loss, lr, rate)
            self.logger.step_done(step)
        if not log_now:
            return
        if not self.env.is_main_process:
            self.window.reset()
            return
        unit = self.built.throughput_unit
        scalars = self.window.scalars(self.env.world_size, unit)
        scalars["train/nan_skips"] = float(self.state.nan_total)
        scalars["train/epoch"] = float(self.state.epoch)
        self.logger.scalars(scalars, step)
        last_lr = "train/lr" if len(self.phases) == 1 else f"train/lr_{self.phases[-1].name}"
        loss, lr = scalars.get("train/loss", float("nan")), scalars.get(last_lr, 0.0)
        self.logger.progress(step, loss, lr, scalars[f"train/{unit}_per_s"])
        self.window.reset()

    # ---------------------------------------------------------------------- validation and samples

    def validate(self) -> dict[str, float]:
        """Validation metrics with the EMA weights, in eval mode, without gradients (every rank runs it:
        FSDP's forward is a collective); rank 0's numbers are broadcast so every rank decides alike."""
        self._settle()  # the EMA of every step so far
        step = self._last_validated_step = self.state.step
        if self.val_loader is None or not hasattr(self.task, "validate"):
            return {}
        start = time.perf_counter()
        self.heartbeat.doing("validating")
        with self._inference_models() as models:
            raw = self.task.validate(models, self.logger.validation_loader(self.val_loader))
        metrics = {(k if k.startswith("val/") else f"val/{k}"): float(v) for k, v in raw.items()}
        metrics = D.broadcast_object(metrics, self.env)  # type: ignore[assignment]
        self.logger.scalars(metrics, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.logger.message(f"step {step}: {shown} ({time.perf_counter() - start:.1f} s)")
        self.logger.validation_figures(metrics, self.tcfg.best_metric)
        self._sample()
        return metrics

    @contextlib.contextmanager
    def _inference_models(self) -> Iterator[dict[str, nn.Module]]:
        """What `Task.validate` and `Task.sample` get: the unwrapped models (not DDP), EMA weights swapped
        in, in eval mode, under no_grad and autocast, with every RNG stream forked."""
        ema = self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()
        with forked_rng(self.env.device), ema, eval_mode(self.models), torch.no_grad(), self._autocast():
            yield dict(self.models)

    def _sample(self) -> None:
        """The task's samples: rank 0 alone, except under FSDP where every rank must run the forward
        (the other ranks write into a temporary folder that is thrown away)."""
        if not hasattr(self.task, "sample") or not (self.env.is_main_process or self.fsdp):
            return
        step = self.state.step
        self.heartbeat.doing("drawing samples")
        with contextlib.ExitStack() as stack:
            if self.env.is_main_process:
                out_dir = self.run_dir / "samples" / f"step_{step:07d}"
                out_dir.mkdir(parents=True, exist_ok=True)
            else:
                out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            try:
                with self._inference_models() as models:
                    media = self.task.sample(models, step, out_dir)
            except Exception as err:  # a sample must never cost a long run
                if self.fsdp:
                    raise
                log.warning("task.sample failed at step %d: %s: %s", step, type(err).__name__, err)
                return
            self.logger.media(list(media or []), step)

    def _after_validation(self, metrics: dict[str, float]) -> tuple[bool, bool]:
        """(improved, stop early) for `training.best_metric` and `early_stopping_patience`."""
        key = self.tcfg.best_metric
        if key not in metrics:
            if metrics and not self._warned_metric:
                log.warning("training.best_metric %r is not among the validation metrics %s; best.pth is not kept",
                            key, sorted(metrics))  # fmt: skip
                self._warned_metric = True
            return False, False
        best = self.state.best_value
        improved, stop = self.state.judge(
            metrics[key], self.tcfg.best_mode, self.tcfg.early_stopping_patience
        )
        if stop:
            shown = "none finite" if best is None else f"{best:.4g}"
            self.logger.message(f"early stop at step {self.state.step}: {key} has not improved for "
                                f"{self.state.bad_validations} validations (best {shown})")  # fmt: skip
        return improved, stop
