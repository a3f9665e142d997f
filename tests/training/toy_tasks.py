"""Tiny tasks for the trainer's tests: a regression (one optimizer) and a GAN (two phases).

Also an entry point for the subprocess tests (SIGKILL resume, torchrun DDP/FSDP):

    python tests/training/toy_tasks.py run --task toy --config cfg.yaml --data-dir D [--resume auto]
    torchrun --nproc_per_node=2 tests/training/toy_tasks.py distributed --config cfg.yaml --data-dir D --out OUT

Test hooks through the environment (they reach subprocesses too): TOY_NAN_AT="3,4" makes the loss of
those training steps NaN; TOY_KILL_AT=9 makes the process SIGKILL itself when step 9 starts, i.e. right
after the step-8 checkpoint was written; TOY_NOISE=0 turns off the input noise and the GAN's dropout
(drawn from the global RNG, so they differ between ranks); TOY_SIZE sets the training-set size (default 24);
TOY_SLEEP=1.5 makes every training step sleep that many seconds (a slow run, for the progress tests).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs.training_config import StrictModel, TrainingOverrides
from cinematic.training.family import ModelFamily
from cinematic.training.task import BuildContext, Built, Media, Phase, StepOutput

TOY_TASKS = ("toy", "toy_gan")


class ToySection(StrictModel):
    """The toy families' config section: a model key (what a resumed run must keep) and the
    per-family `training:` overrides."""

    hidden: int = 8
    """Recorded only, so that the resume check has a model key to compare."""
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)


def families() -> list[ModelFamily]:
    """The toy tasks as model families (their own config sections, `toy_model` and `toy_gan_model`)."""
    return [
        ModelFamily(name="toy", task=ToyRegression, config=ToySection, section="toy_model"),
        ModelFamily(name="toy_gan", task=ToyGAN, config=ToySection, section="toy_gan_model"),
    ]


def register() -> None:
    """Make the toy families known to the registry (and so to `Config.training_for`)."""
    from cinematic import registry

    for family in families():
        registry.register(family)


def make_task(name: str) -> Any:
    from cinematic import registry

    return registry.get(name).task_instance()


class PairSet(Dataset):
    """(x, y) pairs of a fixed random linear map plus noise; records the epochs it was told about."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.x = torch.from_numpy(rng.standard_normal((n, 4)).astype(np.float32))
        weight = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])  # the same map for train and validation
        self.y = self.x @ weight + 0.1 * torch.from_numpy(rng.standard_normal((n, 1)).astype(np.float32))
        self.epochs: list[int] = []
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index], "epoch": torch.tensor(self.epoch)}


def _step_hooks(calls: int) -> bool:
    """Apply TOY_KILL_AT / TOY_NAN_AT / TOY_SLEEP for training step number `calls` (1-based); True:
    make it NaN."""
    if os.environ.get("TOY_SLEEP"):
        time.sleep(float(os.environ["TOY_SLEEP"]))
    if os.environ.get("TOY_KILL_AT") and calls == int(os.environ["TOY_KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    nan_at = {int(s) for s in os.environ.get("TOY_NAN_AT", "").split(",") if s}
    return calls in nan_at


class ToyRegression:
    """An MLP with a LayerNorm (biases and norm scales: the no-decay group) fitting y = x·w."""

    name = "toy"

    def __init__(self) -> None:
        self.calls = 0
        self.seen_epochs: set[int] = set()

    def build(self, cfg: Any, data_dir: Path, ctx: BuildContext) -> Built:
        size = int(os.environ.get("TOY_SIZE", "24"))
        net = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))
        self.train_set = PairSet(size, seed=0)
        return Built(models={"net": net}, train_set=self.train_set, val_set=PairSet(8, seed=1))

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict
    ) -> StepOutput:
        self.calls += 1
        self.seen_epochs.update(batch["epoch"].tolist())
        # Dropout-like noise from the global RNG: exact resume must restore it.
        noise = float(os.environ.get("TOY_NOISE", "0.01")) * torch.randn_like(batch["x"])
        pred = models["net"](batch["x"] + noise)
        loss = torch.nn.functional.mse_loss(pred, batch["y"])
        if _step_hooks(self.calls):
            loss = loss * float("nan")
        return StepOutput(loss=loss, metrics={"abs_err": (pred - batch["y"]).abs().mean()})

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        total, count = 0.0, 0
        for batch in loader:
            pred = models["net"](batch["x"])
            total += float(torch.nn.functional.mse_loss(pred, batch["y"], reduction="sum"))
            count += len(batch["x"])
        return {"val/loss": total / count}

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        tone = np.sin(np.linspace(0, 200 * np.pi, 800)).astype(np.float32) * 0.5
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        image[:, :4] = 255
        path = out_dir / "sample.txt"
        path.write_text(f"step {step}\n")
        return [
            Media("audio", "tone", tone, sample_rate=8000),
            Media("image", "half", image),
            Media("text", "note", f"step {step}"),
            Media("file", "file", path),
        ]

    def export_state(self) -> dict[str, Any]:
        return {"input_dim": 4, "labels": ["a", "b"]}

    def inference(self, checkpoint: dict[str, Any], device: Any = "cpu", **kwargs: Any) -> Any:
        return checkpoint["task_state"]


class ToyGAN:
    """Two phases like HiFi-GAN: the discriminator steps first on detached fakes, then the generator
    (adversarial + reconstruction loss) through the updated discriminator; EMA on the generator only."""

    name = "toy_gan"

    def __init__(self) -> None:
        self.calls = 0

    def build(self, cfg: Any, data_dir: Path, ctx: BuildContext) -> Built:
        dropout = 0.1 if float(os.environ.get("TOY_NOISE", "0.01")) > 0 else 0.0
        gen = nn.Sequential(nn.Linear(4, 8), nn.Dropout(dropout), nn.Tanh(), nn.Linear(8, 1))
        disc = nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.1), nn.Linear(8, 1))
        return Built(
            models={"gen": gen, "disc": disc},
            train_set=PairSet(int(os.environ.get("TOY_SIZE", "24")), seed=0),
            val_set=PairSet(8, seed=1),
            phases=[Phase("disc", ["disc"]), Phase("gen", ["gen"])],
            ema_models=["gen"],
        )

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict
    ) -> StepOutput:
        x, y = batch["x"], batch["y"]
        if phase == "disc":
            self.calls += 1
            _step_hooks(self.calls)
            scratch["fake"] = models["gen"](x)
            real = models["disc"](torch.cat([x, y], dim=1))
            fake = models["disc"](torch.cat([x, scratch["fake"].detach()], dim=1))
            loss = ((real - 1) ** 2).mean() + (fake**2).mean()
            return StepOutput(loss=loss)
        adv = ((models["disc"](torch.cat([x, scratch["fake"]], dim=1)) - 1) ** 2).mean()
        rec = (scratch["fake"] - y).abs().mean()
        return StepOutput(loss=adv + 10 * rec, metrics={"rec": rec.detach()})

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        errors = [float((models["gen"](b["x"]) - b["y"]).abs().mean()) for b in loader]
        return {"val/loss": float(np.mean(errors))}

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        return [Media("text", "gen", f"step {step}")]

    def export_state(self) -> dict[str, Any]:
        return {}

    def inference(self, checkpoint: dict[str, Any], device: Any = "cpu", **kwargs: Any) -> Any:
        return checkpoint


# ---------------------------------------------------------------------------------- subprocess entry


def _train(task: str, cfg: Any, data_dir: Path, resume: str | None = None) -> dict[str, Any]:
    """Train, then return the full weights this rank holds (gathered under FSDP: a collective)."""
    from cinematic.training.trainer import Trainer

    trainer = Trainer(make_task(task), cfg, data_dir, resume=resume)
    trainer.fit()
    return trainer.checkpoints["model"].state_dict()  # ModelWeights: full weights, gathered


def _main() -> int:
    from cinematic.errors import UserError
    from cinematic.registry import load_config
    from cinematic.training.distributed import configure_logging
    from cinematic.training.trainer import run_training

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["run", "distributed"])
    parser.add_argument("--task", default="toy")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--resume")
    parser.add_argument("--out")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--local-rank", "--local_rank", type=int)  # torch.distributed.launch passes it
    args = parser.parse_args()
    register()
    configure_logging()
    if args.mode == "run":
        torch.set_num_threads(2)  # as in the test process, so the arithmetic is the same
        _kill_on_replace(int(os.environ.get("TOY_KILL_ON_REPLACE", "0")))
    try:
        if args.mode == "run":
            run_training(
                make_task(args.task),
                load_config(args.config, args.set),
                Path(args.data_dir),
                resume=args.resume,
            )
        else:
            _distributed(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _kill_on_replace(count: int) -> None:
    """SIGKILL this process at the `count`-th rename onto a .pth file: a save killed after its
    temporary file was written but before it replaced the target (0: never)."""
    if count <= 0:
        return
    from cinematic.training import checkpointing

    calls = [0]
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        calls[0] += str(dst).endswith(".pth")
        if calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    checkpointing.os.replace = replace  # type: ignore[attr-defined]


def _distributed(args: argparse.Namespace) -> None:
    """Under torchrun, for both toy tasks: a DDP run, an FSDP run, and an FSDP run resumed from the FSDP
    run's mid-run checkpoint; each rank saves the weights it ends with (FSDP: gathered on rank 0) to
    OUT/<task>_<run>_rank<r>.pt."""
    import torch.distributed as dist

    from cinematic.registry import load_config

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir)
    base = load_config(args.config, args.set)
    for task in TOY_TASKS:
        for strategy in ("ddp", "fsdp"):
            sets = [*args.set, f"training.strategy={strategy}", f"training.run_name={task}_{strategy}"]
            weights = _train(task, load_config(args.config, sets), data_dir)
            torch.save(weights, out / f"{task}_{strategy}_rank{rank}.pt")
        middle = (
            Path(base.training.work_dir)
            / f"{task}_fsdp"
            / "checkpoints"
            / f"step_{base.training.max_steps // 2}.dcp"  # FSDP: sharded checkpoints
        )
        sets = [*args.set, "training.strategy=fsdp", f"training.run_name={task}_fsdp_resumed"]
        weights = _train(task, load_config(args.config, sets), data_dir, resume=str(middle))
        torch.save(weights, out / f"{task}_fsdp_resumed_rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(_main())
