"""What a run shows while it trains: a progress bar or plain lines, heartbeats, TensorBoard and W&B
(rank 0 only).

- Console on a terminal (`logging.progress_bar: null` and stderr a terminal, or `true`): a tqdm bar
  updated every optimizer step with step/total, ETA, epoch, a smoothed loss, lr, throughput in the
  task's unit and the last validation metric; the loss is read from the device at most every 0.5 s
  (`LiveLoss`). While a bar may be up, console log records go through `tqdm.write`
  (`console_logging`), so lines printed between updates never garble it. Validation passes get a
  second bar after 2 s.
- Console elsewhere (CI, SLURM, nohup): one log line every `logging.log_every_steps` steps.
- Both: a `Heartbeat` thread prints "still working: step N/T, <what> for <s> s" whenever nothing
  was printed for `logging.heartbeat_seconds`, also in the middle of a long step, a long build or a
  long validation.
- TensorBoard: `<work_dir>/logs/tensorboard/<run name>/`, so `tensorboard --logdir
  work_dir/logs/tensorboard` shows every model's runs. Scalars train/loss, train/lr, train/grad_norm,
  train/<unit>_per_s, the task's train/<metric> and val/<metric>; the task's samples as audio, images
  and text.
- W&B (`logging.logger: wandb`): the same scalars and media; `WANDB_MODE=offline` (or
  `logging.wandb.mode: offline`) writes the run under `<work_dir>/logs/wandb/` without network.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.configs import Config
from cinematic.errors import UserError
from cinematic.training.task import Media

log = logging.getLogger("cinematic.training")

BAR_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% [{elapsed}, ETA {remaining}, {rate_fmt}{postfix}]"
)
VALIDATION_BAR_DELAY = 2.0
"""Seconds a validation pass runs before its bar appears (short passes show none)."""


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def show_progress_bar(cfg: Config) -> bool:
    """`logging.progress_bar`, where null means: stderr is a terminal."""
    show = cfg.logging.progress_bar
    return sys.stderr.isatty() if show is None else bool(show)


def _is_console_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)


@contextlib.contextmanager
def console_logging(bars: bool) -> Iterator[None]:
    """While tqdm bars may be up (`bars`), route the root logger's console handler through
    `tqdm.write`, so a log line printed between two bar updates does not garble the bar. Nothing
    changes when there is no console handler (logging not configured) or no bar."""
    if not bars or not any(_is_console_handler(h) for h in logging.getLogger().handlers):
        yield
        return
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(tqdm_class=tqdm):
        yield


class Heartbeat:
    """A background thread that prints "still working: step N/T, <what> for <s> s" whenever the run
    printed nothing for `seconds` (None: off; on ranks other than 0 it is never started).

    The training loop only sets attributes (`begin_step` every step: no lock, no formatting); the
    thread wakes every min(1 s, seconds / 10), compares two clocks and goes back to sleep, so it
    costs nothing while steps are fast. `tick`, when set, is also called on every wake-up (the
    progress bar uses it to keep its clock moving during a long step). `running()` starts and
    stops (joins) the thread."""

    def __init__(self, seconds: float | None, enabled: bool = True) -> None:
        self.seconds = seconds if enabled and seconds else None
        self.step = 0
        """The step being worked on (1-based); 0 before the first one."""
        self.total = 0
        """Total steps of the run (0: not known yet, e.g. while building)."""
        self.what: str | None = None
        """What the run is doing (None: nothing to report)."""
        self.step_label = "training"
        self.since = self.last_output = time.perf_counter()
        self.tick: Callable[[float], None] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def doing(self, what: str | None) -> None:
        """A new phase of the run starts now (its elapsed time counts from here)."""
        self.what, self.since = what, time.perf_counter()

    def begin_step(self, step: int) -> None:
        """Optimizer step `step` starts now (called every step: keep it cheap)."""
        self.step, self.what, self.since = step, self.step_label, time.perf_counter()

    def output(self) -> None:
        """Something was just printed (a log line, a bar update): the next beat waits `seconds`."""
        self.last_output = time.perf_counter()

    def line(self, now: float) -> str:
        elapsed = now - self.since
        shown = f"{elapsed:.1f}" if elapsed < 10 else f"{elapsed:.0f}"
        where = f"step {self.step}/{self.total}, " if self.total else ""
        return f"still working: {where}{self.what} for {shown} s"

    @contextlib.contextmanager
    def running(self) -> Iterator[Heartbeat]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        if self.seconds is None or self._thread is not None:
            return
        self.last_output = time.perf_counter()
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="cinematic-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join()

    def _run(self) -> None:
        assert self.seconds is not None
        seconds = self.seconds
        while not self._wake.wait(min(1.0, seconds / 10)):
            try:
                now = time.perf_counter()
                if self.tick is not None:
                    self.tick(now)
                if self.what is None or now - self.last_output < seconds:
                    continue
                log.info("%s", self.line(now))
                self.last_output = time.perf_counter()
            except Exception:  # a heartbeat must never end (or noisily break) a run
                continue


class ProgressLoader:
    """A validation loader that reports its progress: the batch it is at (for the heartbeat) and, on
    a terminal, a bar that appears once a pass has run `VALIDATION_BAR_DELAY` seconds."""

    def __init__(self, loader: Any, heartbeat: Heartbeat, bar: bool, what: str = "validating") -> None:
        self.loader, self.heartbeat, self.bar, self.what = loader, heartbeat, bar, what

    def __iter__(self) -> Iterator[Any]:
        try:
            total: int | None = len(self.loader)
        except TypeError:
            total = None
        of = f"/{total}" if total is not None else ""
        bar: Any = None
        if self.bar:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=total,
                desc=self.what,
                unit="batch",
                leave=False,
                delay=VALIDATION_BAR_DELAY,
                dynamic_ncols=True,
            )
        try:
            for index, batch in enumerate(self.loader, 1):
                self.heartbeat.what = f"{self.what} (batch {index}{of})"
                yield batch
                if bar is not None:
                    bar.update()
                    if bar.last_print_n == bar.n:  # it was drawn: the console is not silent
                        self.heartbeat.output()
        finally:
            if bar is not None:
                bar.close()

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # .dataset, .batch_size, ... of the wrapped loader
        return getattr(self.loader, name)


class RunLogger:
    """Console + TensorBoard + W&B for one run. On ranks other than 0 every method does nothing."""

    def __init__(
        self,
        cfg: Config,
        run_name: str,
        total_steps: int,
        start_step: int,
        unit: str,
        enabled: bool,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.unit = unit
        self.log_every = cfg.logging.log_every_steps
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat(None)
        self.writer: Any = None
        self.wandb: Any = None
        self.bar: Any = None
        self._start_time = time.perf_counter()
        self._start_step = start_step
        self._figures = ""
        self._val = ""
        self._drawn = time.perf_counter()
        if not enabled:
            return
        logs_root = Path(cfg.training.work_dir) / "logs"
        if cfg.logging.logger != "none":
            from torch.utils.tensorboard import SummaryWriter

            self.tb_dir = logs_root / "tensorboard" / run_name
            self.writer = SummaryWriter(log_dir=str(self.tb_dir))
        if cfg.logging.logger == "wandb":
            self.wandb = _start_wandb(cfg, run_name, logs_root)
        if show_progress_bar(cfg):
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                desc=run_name,
                unit="step",
                dynamic_ncols=True,
                bar_format=BAR_FORMAT,
            )
            self.heartbeat.tick = self._tick
            self.heartbeat.output()

    # ------------------------------------------------------------------------------------------ scalars

    def scalars(self, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    # ---------------------------------------------------------------------------------------- console

    def bar_figures(self, epoch: int, loss: float, lr: float, rate: float) -> None:
        """New figures for the bar (shown at its next redraw)."""
        if self.bar is None:
            return
        self._figures = f"epoch {epoch}  loss {loss:.4g}  lr {lr:.3g}  {rate:.1f} {self.unit}/s"
        self._set_postfix()

    def validation_figures(self, metrics: dict[str, float], key: str) -> None:
        """The bar's last validation metric: `key` (the best_metric) when present, else the first."""
        if self.bar is None or not metrics:
            return
        key = key if key in metrics else next(iter(metrics))
        self._val = f"{key} {metrics[key]:.4g}"
        self._set_postfix()

    def _set_postfix(self) -> None:
        text = "  ".join(part for part in (self._figures, self._val) if part)
        self.bar.set_postfix_str(text, refresh=False)

    def step_done(self, step: int) -> None:
        """Called every step on rank 0: moves the bar (tqdm redraws at most every 0.1 s)."""
        if self.bar is None:
            return
        self.bar.update(step - self.bar.n)
        self._drawn = time.perf_counter()
        self.heartbeat.last_output = self._drawn

    def _tick(self, now: float) -> None:
        """From the heartbeat thread: keep the bar's clock moving during a long step."""
        if self.bar is not None and now - self._drawn >= 1.0:
            self.bar.refresh()
            self._drawn = now

    def progress(self, step: int, loss: float, lr: float, rate: float) -> None:
        """A plain progress line (without a bar) every log_every_steps and at the last step."""
        if not self.enabled or self.bar is not None:
            return
        if step % self.log_every == 0 or step == self.total_steps:
            elapsed = time.perf_counter() - self._start_time
            done = step - self._start_step
            eta = elapsed / done * (self.total_steps - step) if done > 0 else float("nan")
            log.info(
                "step %d/%d  loss %.4g  lr %.3g  %.1f %s/s  ETA %s",
                step,
                self.total_steps,
                loss,
                lr,
                rate,
                self.unit,
                _format_eta(eta),
            )
            self.heartbeat.output()

    def first_step_done(self, seconds: float) -> None:
        """Without a bar: how long the first step took (the first progress line may be far away)."""
        if self.enabled and self.bar is None:
            log.info("first step done in %.1f s", seconds)
            self.heartbeat.output()

    def message(self, text: str) -> None:
        """A line that does not break the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.info(text)
        self.heartbeat.output()

    def validation_loader(self, loader: Any) -> Any:
        """`loader` reporting its progress to the heartbeat (and on a bar) on rank 0."""
        if not self.enabled:
            return loader
        return ProgressLoader(loader, self.heartbeat, bar=self.bar is not None)

    # -------------------------------------------------------------------------------------------- media

    def media(self, items: list[Media], step: int) -> None:
        if not self.enabled:
            return
        for item in items:
            try:
                self._one_media(item, step)
            except Exception as err:  # a bad sample must not end a long run
                log.warning("could not log sample %s (%s): %s", item.name, item.kind, err)

    def _one_media(self, item: Media, step: int) -> None:
        tag = f"samples/{item.name}"
        if item.kind == "audio":
            audio = np.asarray(item.data, dtype=np.float32)
            mono = audio.mean(axis=0) if audio.ndim == 2 else audio  # TensorBoard audio is mono
            mono = np.clip(mono, -1.0, 1.0)
            if self.writer is not None:
                import torch

                self.writer.add_audio(
                    tag, torch.from_numpy(mono.copy()), step, sample_rate=item.sample_rate or 22050
                )
            if self.wandb is not None:
                self.wandb.log(
                    {tag: self.wandb.Audio(mono, sample_rate=item.sample_rate or 22050)}, step=step
                )
        elif item.kind == "image":
            if hasattr(item.data, "savefig"):  # a matplotlib Figure
                if self.writer is not None:
                    self.writer.add_figure(tag, item.data, step, close=False)
                if self.wandb is not None:
                    self.wandb.log({tag: self.wandb.Image(item.data)}, step=step)
                import matplotlib.pyplot as plt

                plt.close(item.data)
            else:
                image = np.asarray(item.data)
                if self.writer is not None:
                    self.writer.add_image(tag, image, step, dataformats="HWC" if image.ndim == 3 else "HW")
                if self.wandb is not None:
                    self.wandb.log({tag: self.wandb.Image(image)}, step=step)
        elif item.kind == "text":
            if self.writer is not None:
                self.writer.add_text(tag, str(item.data), step)
            if self.wandb is not None:
                self.wandb.log({tag: self.wandb.Html(f"<pre>{item.data}</pre>")}, step=step)
        # "file": already written under the run folder by the task; nothing to upload.

    def close(self) -> None:
        if self.bar is not None:
            self.heartbeat.tick = None
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(cfg: Config, run_name: str, logs_root: Path) -> Any:
    try:
        import wandb
    except ImportError:
        raise UserError(
            "logging.logger is 'wandb' but the wandb package is not installed; install it with "
            "`pip install 'cinematic[wandb]'`, or set logging.logger: tensorboard"
        ) from None
    folder = logs_root / "wandb"
    folder.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=cfg.logging.wandb.project,
        entity=cfg.logging.wandb.entity,
        mode=cfg.logging.wandb.mode,
        name=run_name,
        dir=str(folder),
        config=cfg.to_dict(),
    )
