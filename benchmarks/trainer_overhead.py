"""Steps/s of a small MLP through the `Trainer` against a bare hand-written loop doing the same work.

Both loops run the same task code (forward + loss), AdamW, global-norm clipping and a cosine schedule
over the same in-memory data; the Trainer adds what it always does (device moves, the NaN guard, its
loss/grad-norm bookkeeping, TensorBoard scalars every `log_every_steps`). Steps are timed from
inside `training_step` (after `--warmup` steps) so set-up and the final checkpoint are not counted.
Runs alternate between the two loops and the median of `--repeats` is reported, by wall clock and by
this process's CPU time (the steadier figure on a shared machine; use --threads 1 there). Goal:
overhead < 5 %.

    .venv/bin/python benchmarks/trainer_overhead.py [--steps 300] [--width 512] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cinematic.registry import load_config
from cinematic.training.optimizers import build_optimizer, build_scheduler
from cinematic.training.task import Built, StepOutput
from cinematic.training.trainer import Trainer


def make_model(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, width),
        nn.GELU(),
        nn.LayerNorm(width),
        nn.Linear(width, width),
        nn.GELU(),
        nn.LayerNorm(width),
        nn.Linear(width, width),
        nn.GELU(),
        nn.Linear(width, 1),
    )


class BenchTask:
    """Regression on random data; records when each training step starts."""

    name = "bench"

    def __init__(self, width: int, items: int) -> None:
        self.width, self.items, self.times, self.cpu_times = width, items, [], []
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(items, 64, generator=generator)
        self.y = torch.randn(items, 1, generator=generator)

    def build(self, cfg: Any, data_dir: Path, ctx: Any) -> Built:
        return Built(models={"net": make_model(self.width)}, train_set=TensorDataset(self.x, self.y))

    def training_step(self, models: Any, batch: Any, phase: str, scratch: dict) -> StepOutput:
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())
        x, y = batch
        return StepOutput(loss=nn.functional.mse_loss(models["net"](x), y))

    def validate(self, models: Any, loader: Any) -> dict[str, float]:
        return {}

    def sample(self, models: Any, step: int, out_dir: Path) -> list:
        return []

    def export_state(self) -> dict:
        return {}


def steps_per_second(task: BenchTask, warmup: int) -> tuple[float, float]:
    """(steps per wall-clock second, steps per CPU second of this process)."""
    wall, cpu = task.times[warmup:], task.cpu_times[warmup:]
    return (len(wall) - 1) / (wall[-1] - wall[0]), (len(cpu) - 1) / (cpu[-1] - cpu[0])


def run_trainer(args: argparse.Namespace, work_dir: Path, index: int) -> tuple[float, float]:
    sets = [
        f"training.work_dir={work_dir}",
        f"training.run_name=trainer_{index}",
        f"training.max_steps={args.steps}",
        f"training.batch_size={args.batch}",
        "training.amp=false",
        "training.ema_decay=null",
        f"training.checkpoint_every_steps={10 * args.steps}",
        "training.warmup_steps=10",
        "data.num_workers=0",
        "logging.progress_bar=false",
        "logging.log_every_steps=10",
    ]
    cfg = load_config(None, sets)
    task = BenchTask(args.width, args.steps * args.batch)
    Trainer(task, cfg, work_dir).fit()  # a task without a config section trains on the global keys
    return steps_per_second(task, args.warmup)


def run_bare(args: argparse.Namespace) -> tuple[float, float]:
    """The loop one would write by hand for the same work."""
    cfg = load_config(None, ["training.warmup_steps=10", f"training.max_steps={args.steps}"]).training
    task = BenchTask(args.width, args.steps * args.batch)
    torch.manual_seed(cfg.seed)
    model = make_model(args.width)
    optimizer = build_optimizer([model], cfg)
    scheduler = build_scheduler(optimizer, cfg, args.steps, args.steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        TensorDataset(task.x, task.y),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        generator=generator,
    )
    models = {"net": model}
    for batch in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = task.training_step(models, batch, "main", {}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.gradient_clip_val, foreach=True)
        optimizer.step()
        scheduler.step()
    return steps_per_second(task, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trainer, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeats):
            bare.append(run_bare(args))
            trainer.append(run_trainer(args, Path(tmp), index))

    def summary(runs: list[tuple[float, float]], which: int) -> float:
        return statistics.median(run[which] for run in runs)

    result = {
        "benchmark": "trainer_overhead",
        "model": f"MLP 64-{args.width}-{args.width}-{args.width}-1, batch {args.batch}, AdamW + clip + cosine",
        "steps": args.steps,
        "threads": args.threads,
    }
    for which, clock in enumerate(("wall", "cpu")):
        bare_sps, trainer_sps = summary(bare, which), summary(trainer, which)
        result[f"bare_loop_steps_per_{clock}_s"] = round(bare_sps, 2)
        result[f"trainer_steps_per_{clock}_s"] = round(trainer_sps, 2)
        result[f"overhead_percent_{clock}"] = round(100.0 * (bare_sps / trainer_sps - 1.0), 2)
    result["runs_wall"] = {
        "bare": [round(r[0], 2) for r in bare],
        "trainer": [round(r[0], 2) for r in trainer],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
