"""The toy family's task: data, loss, validation, a sample, and its `FAMILY` record.

Everything cinematic needs to know about the family is in `FAMILY` at the end: its config section
(`toy_model:` in config.yaml, validated with the rest), how to train it (`ToyTask`), how to load a
checkpoint for generation (`ToyGenerator.from_checkpoint`), and its `cinematic generate toy` command.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

from cinematic.checkpoint_io import inference_weights, read_checkpoint
from cinematic.configs.training_config import StrictModel, TrainingOverrides
from cinematic.errors import UserError
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag
from cinematic.training.task import BuildContext, Built, Media, StepOutput
from cinematic_toy.model import CharBigram, CharBigramConfig

BLOCK = 32
"""Bytes per training item."""


class ToyModelConfig(StrictModel):
    """`toy_model:` in config.yaml."""

    dim: int = Field(16, ge=1)
    """Embedding width of the bigram model."""
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    """Overrides of the global `training:` keys for this family's runs."""


class TextBlocks(Dataset):
    """Consecutive blocks of BLOCK + 1 bytes (input and the shifted target)."""

    def __init__(self, data: bytes) -> None:
        self.data = torch.tensor(list(data), dtype=torch.long)

    def __len__(self) -> int:
        return max(1, (len(self.data) - 1) // BLOCK)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        chunk = self.data[index * BLOCK : index * BLOCK + BLOCK + 1]
        return {"inputs": chunk[:-1], "targets": chunk[1:]}


class ToyTask:
    """Trains `CharBigram` on the *.txt files of a folder (the last tenth is validation)."""

    name = "toy"

    def build(self, cfg: Any, data_dir: Path, ctx: BuildContext) -> Built:
        files = sorted(Path(data_dir).glob("*.txt"))
        if not files:
            raise UserError(f"{data_dir}: no *.txt files for the toy family")
        text = b"\n".join(f.read_bytes() for f in files)
        if len(text) < 4 * (BLOCK + 1):
            raise UserError(f"{data_dir}: the toy family needs at least {4 * (BLOCK + 1)} bytes of text")
        cut = len(text) * 9 // 10
        self.model_config = CharBigramConfig(dim=cfg.toy_model.dim)
        return Built(
            models={"toy": CharBigram(self.model_config)},
            train_set=TextBlocks(text[:cut]),
            val_set=TextBlocks(text[cut:]),
            throughput_unit="bytes",
        )

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        logits = models["toy"](batch["inputs"])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten())
        return StepOutput(loss=loss, num_items=batch["targets"].numel())

    @torch.no_grad()
    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        total, count = 0.0, 0
        for batch in loader:
            logits = models["toy"](batch["inputs"])
            total += float(F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="sum"))
            count += batch["targets"].numel()
        return {"val/loss": total / max(1, count)}

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        text = ToyGenerator(models["toy"]).generate(length=64, seed=step)
        return [Media("text", "sample/text", text)]

    def export_state(self) -> dict[str, Any]:
        return {"model_config": asdict(self.model_config)}


class ToyGenerator:
    """What `cinematic.load(toy_checkpoint)` returns."""

    def __init__(self, model: CharBigram) -> None:
        self.model = model

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], device: Any = "cpu", **_: Any) -> ToyGenerator:
        model = CharBigram(CharBigramConfig(**checkpoint["task_state"]["model_config"]))
        model.load_state_dict(inference_weights(checkpoint, "toy"))
        return cls(model.to(device).eval())

    def generate(self, length: int = 200, seed: int = 0) -> str:
        return bytes(self.model.sample(length, seed)).decode("utf-8", errors="replace")


def generate_command(args: argparse.Namespace) -> int:
    """`cinematic generate toy --checkpoint CKPT [--length N] [--seed S] --out out.txt`."""
    text = ToyGenerator.from_checkpoint(read_checkpoint(args.checkpoint)).generate(args.length, args.seed)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} characters)")
    return 0


def add_commands(groups: CommandGroups) -> None:
    parser = groups.generate.add_parser("toy", help="write text with a toy bigram model")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    add_debug_flag(parser)
    parser.set_defaults(handler="cinematic_toy.task:generate_command")


FAMILY = ModelFamily(
    name="toy",
    task=ToyTask,
    config=ToyModelConfig,
    section="toy_model",
    load=ToyGenerator.from_checkpoint,
    add_commands=add_commands,
)
