"""What a run shows while it trains: a progress bar or plain lines, TensorBoard, and W&B (rank 0 only).

- Console: a tqdm bar (step, loss, lr, <unit>/s, ETA) when stderr is a terminal, else one log line
  every `logging.log_every_steps` steps (`logging.progress_bar` forces either).
- TensorBoard: `<work_dir>/logs/tensorboard/<run name>/`, so `tensorboard --logdir
  work_dir/logs/tensorboard` shows every model's runs. Scalars train/loss, train/lr, train/grad_norm,
  train/<unit>_per_s, the task's train/<metric> and val/<metric>; the task's samples as audio, images
  and text.
- W&B (`logging.logger: wandb`): the same scalars and media; `WANDB_MODE=offline` (or
  `logging.wandb.mode: offline`) writes the run under `<work_dir>/logs/wandb/` without network.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.configs import Config
from cinematic.errors import UserError
from cinematic.training.task import Media

log = logging.getLogger("cinematic.training")


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
    ) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.unit = unit
        self.log_every = cfg.logging.log_every_steps
        self.writer: Any = None
        self.wandb: Any = None
        self.bar: Any = None
        self._start_time = time.perf_counter()
        self._start_step = start_step
        if not enabled:
            return
        logs_root = Path(cfg.training.work_dir) / "logs"
        if cfg.logging.logger != "none":
            from torch.utils.tensorboard import SummaryWriter

            self.tb_dir = logs_root / "tensorboard" / run_name
            self.writer = SummaryWriter(log_dir=str(self.tb_dir))
        if cfg.logging.logger == "wandb":
            self.wandb = _start_wandb(cfg, run_name, logs_root)
        show_bar = cfg.logging.progress_bar
        if show_bar is None:
            show_bar = sys.stderr.isatty()
        if show_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps, initial=start_step, desc=run_name, unit="step", dynamic_ncols=True
            )

    # ------------------------------------------------------------------------------------------ scalars

    def scalars(self, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def progress(self, step: int, loss: float, lr: float, rate: float) -> None:
        """Called every step on rank 0 with the latest figures; prints every log_every_steps."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"loss {loss:.4g} lr {lr:.3g} {rate:.1f} {self.unit}/s", refresh=False)
            self.bar.refresh()
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

    def message(self, text: str) -> None:
        """A line that does not break the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.info(text)

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
