"""`ModelFamily`: everything cinematic needs to know about one model family, declared once.

A family module (a task file) ends with its record::

    FAMILY = ModelFamily(
        name="singing",
        task=SingingTask,                  # training: data, loss, samples (the `Task` protocol)
        config=SingingConfig,              # its config section, validated with the rest
        section="singing_model",           # the section's key in config.yaml
        load=SingingSynthesizer.from_checkpoint,   # inference: checkpoint -> ready object
        quickstart=quickstart,             # optional stage of `cinematic quickstart`
        add_commands=add_commands,         # optional `generate ...` / top-level subcommands
    )

`cinematic.registry` collects the records of the built-in families and of every installed package
that names one under the entry-point group `cinematic.tasks`; the root config, the CLI choices and the
quickstart stages are derived from them (torchtitan's `register_train_spec` works this way).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cinematic.configs import Config


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """`--debug` on a subcommand (no default of its own, so `cinematic --debug CMD` still counts)."""
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks"
    )


def add_sampling_flags(parser: argparse.ArgumentParser, temperature: float) -> None:
    """The sampling flags every autoregressive generate command shares."""
    parser.add_argument("--temperature", type=float, default=temperature)
    parser.add_argument("--top_k", "--top-k", type=int, default=None)
    parser.add_argument("--top_p", "--top-p", type=float, default=None)
    parser.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance weight (1 = off)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


@dataclass
class CommandGroups:
    """Where a family adds its subcommands (argparse sub-parser groups of `cinematic`)."""

    top: argparse._SubParsersAction
    """`cinematic <command>` (e.g. synthesize, vocode, clone)."""
    generate: argparse._SubParsersAction
    """`cinematic generate <what>`."""
    evaluate: argparse._SubParsersAction
    """`cinematic evaluate <what>`."""


@dataclass(frozen=True)
class ModelFamily:
    """One model family: its name, config section, task, inference loader and optional hooks."""

    name: str
    """`cinematic train <name>`. Its task's `name` is the `task` key of its checkpoints and the default
    run folder; usually the same, but the music audio route's task is "music" like the MIDI route's."""
    task: Callable[[], Any]
    """A factory (usually the class) of the family's `Task`."""
    config: type[BaseModel] | None = None
    """The pydantic model of its config section (None: the family has no section)."""
    section: str | None = None
    """The section's key in the root config (`music_model`); families may share one."""
    load: Callable[..., Any] | None = None
    """`load(checkpoint_dict, device="cpu", **kwargs)` -> the ready generator/synthesizer."""
    recipe: Callable[..., Any] | None = None
    """`recipe(cfg, data_dir, resume, args)` for runs that are more than one trainer run
    (voice: acoustic model then vocoder); None: one trainer run of `task`."""
    route: Callable[[Config, Path, dict[str, Any] | None], str] | None = None
    """For a family with several routes (music: MIDI or audio): the name of the family that trains
    this data, given the config, the data folder and the checkpoint being resumed (or None)."""
    owns: Callable[[dict[str, Any]], bool] | None = None
    """Whether a checkpoint belongs to this family (default: its `task` key equals `name`)."""
    quickstart: Callable[[Any], list[Path]] | None = None
    """A quickstart stage: trains a tiny model on the demo data and returns the sample files written."""
    quickstart_title: str = ""
    quickstart_order: int = 100
    """Stages run in this order (the speech vocoder before the voice model that uses it)."""
    add_commands: Callable[[CommandGroups], None] | None = None
    """Adds the family's generate/synthesize/evaluate subcommands (handlers as "module:function")."""
    trainable: bool = True
    """Listed by `cinematic train` (a family trained only inside another's recipe says False)."""
    data_subdir: str | None = None
    """Default `--data_dir` is ./data/<data_subdir or name>."""
    inference_models: tuple[str, ...] | None = None
    """The models generation loads, all that `cinematic export` keeps (a GAN vocoder: its generator,
    not its discriminators); None: every model of the checkpoint."""
    companions: tuple[str, ...] = ()
    """task_state keys that name another checkpoint generation needs (a vocoder): the recipe records it
    there (`checkpoint_io.record_companion`), and `cinematic export` embeds it in the exported file."""

    def task_instance(self) -> Any:
        return self.task()

    def owns_checkpoint(self, checkpoint: dict[str, Any]) -> bool:
        if self.owns is not None:
            return bool(self.owns(checkpoint))
        return checkpoint.get("task") == self.name
