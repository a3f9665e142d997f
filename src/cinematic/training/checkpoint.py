"""`CheckpointManager`: collects the run's stateful pieces into one checkpoint dict, writes it, finds it
again (`--resume`), and restores every piece from it (torchtitan's CheckpointManager, in small).

    manager = CheckpointManager(run_dir / "checkpoints", env, keep_last_k=2)
    checkpoint = manager.find(resume)                 # before the run is built: task_state, config check
    manager.register("model", ModelWeights(models, fsdp))
    manager.register(None, train_state)               # None: its keys go at the top level
    ...
    manager.load_state_dict(checkpoint)               # every piece, in registration order
    manager.save(step, periodic=True, best=False)     # last.pth, step_<n>.pth, best.pth

Each piece is a `Stateful` (`state_dict()` / `load_state_dict()`); the adapters below make the model
weights, EMA, optimizers, schedulers and RNG streams look alike. The file layout is the one documented
in docs/training.md; the files themselves (atomic writes, retention, `--resume auto` scan) are
`cinematic.training.checkpointing`.

Under FSDP2 (`sharded = True`) the weights, EMA and optimizer state are saved as each rank's shards
with `torch.distributed.checkpoint` (their adapters also have `sharded_state_dict()` /
`load_sharded_state_dict()`), into a `step_<n>.dcp/` folder that loads on any world size; see
`cinematic.training.sharded` and docs/scale.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cinematic.configs import Config
from cinematic.errors import UserError
from cinematic.training import checkpointing as ckpt_io
from cinematic.training import distributed as D
from cinematic.training import sharded as dcp_files
from cinematic.training.ema import EMA
from cinematic.training.optimizers import load_scheduler_state, scheduler_state
from cinematic.training.speed import strip_compile_prefix
from cinematic.training.state import Stateful

log = logging.getLogger("cinematic.training")


# --------------------------------------------------------------------------------------- model weights


def full_state_dict(model: nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """Full (unsharded) weights on CPU; a collective under FSDP, so every rank calls it."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def local_state_dict(model: nn.Module) -> dict[str, Any]:
    """The weights as this rank holds them, without a gather: DTensor shards under FSDP2, the tensors
    themselves otherwise (what DCP saves, and the template it loads into)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model)


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor], fsdp: bool, what: str) -> None:
    """Full weights into a (possibly sharded) model; a UserError when they do not fit. Keys saved from
    a `torch.compile` wrapper (`_orig_mod.` prefixes) load into the plain model."""
    state = strip_compile_prefix(state)
    try:
        if fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        else:
            model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(
            f"cannot load the checkpoint's {what} weights into the model built now: {err}"
        ) from None


@dataclass
class ModelWeights:
    """`model`: {name: full state_dict} of the unwrapped models. Every saved model must be there."""

    models: Mapping[str, nn.Module]
    fsdp: bool = False

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: full_state_dict(model, self.fsdp) for name, model in self.models.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, model in self.models.items():
            if name not in state:
                raise UserError(f"the checkpoint has no weights for model {name!r} (it has {list(state)})")
            load_full_state_dict(model, state[name], self.fsdp, repr(name))

    def sharded_state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(this rank's tensors for DCP, the small rest): {name: local state_dict}, {}."""
        return {name: local_state_dict(model) for name, model in self.models.items()}, {}

    def load_sharded_state_dict(self, tensors: dict[str, Any], extra: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        for name, model in self.models.items():
            if name not in tensors:
                raise UserError(f"the checkpoint has no weights for model {name!r} (it has {list(tensors)})")
            set_model_state_dict(model, tensors[name])


@dataclass
class EMAWeights:
    """`ema`: {name: full state_dict with the EMA weights swapped in} ({} without EMA), and
    `ema_updates`. Restored after the models: a checkpoint without EMA weights (EMA turned on when
    resuming) starts the shadow at the loaded weights."""

    ema: EMA | None
    models: Mapping[str, nn.Module]
    fsdp: bool = False

    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return {"ema": {}, "ema_updates": 0}
        with self.ema.swapped_in():
            weights = {name: full_state_dict(self.models[name], self.fsdp) for name in self.ema.params}
        return {"ema": weights, "ema_updates": self.ema.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load(state.get("ema") or {}, state, lambda model, weights, what: load_full_state_dict(
            model, weights, self.fsdp, what))  # fmt: skip

    def sharded_state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(this rank's EMA shards, {"ema_updates"}); copies, since the swap puts the weights back."""
        if self.ema is None:
            return {"ema": {}}, {"ema_updates": 0}
        with self.ema.swapped_in():
            weights = {
                name: {k: v.detach().clone() for k, v in local_state_dict(self.models[name]).items()}
                for name in self.ema.params
            }
        return {"ema": weights}, {"ema_updates": self.ema.num_updates}

    def load_sharded_state_dict(self, tensors: dict[str, Any], extra: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        self._load(tensors.get("ema") or {}, extra, lambda model, weights, what: set_model_state_dict(
            model, weights))  # fmt: skip

    def _load(self, saved: dict[str, Any], state: dict[str, Any], load: Callable[..., None]) -> None:
        if self.ema is None:
            return
        if not saved:
            self.ema.copy_from_models()
        for name in self.ema.params:
            if name not in saved:
                continue
            # Load through the model (this handles FSDP shards), keep the copy as the shadow, and put
            # the model's own weights and buffers back.
            model = self.models[name]
            buffers = [b.detach().clone() for b in model.buffers()]
            with self.ema.swapped_in([name]):
                load(model, saved[name], f"EMA {name!r}")
                self.ema.copy_from_models([name])
            with torch.no_grad():
                for buffer, kept in zip(model.buffers(), buffers):
                    buffer.copy_(kept)
        self.ema.num_updates = int(state.get("ema_updates", 0))


# --------------------------------------------------------------------------------- optimizer, schedule


@dataclass
class OptimizerState:
    """Full optimizer state keyed by parameter name (`<model>.<param>` in `container`), whatever the
    strategy, so a checkpoint moves between single-process, DDP and FSDP runs (a collective under FSDP)."""

    container: nn.Module
    optimizer: torch.optim.Optimizer
    fsdp: bool = False
    phase: str = "main"

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=self.fsdp)
        return get_optimizer_state_dict(self.container, self.optimizer, options=options)

    def load_state_dict(self, state: dict[str, Any], full: bool = True) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=full)
        try:
            set_optimizer_state_dict(self.container, self.optimizer, optim_state_dict=state, options=options)
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(
                f"cannot restore the optimizer state of phase {self.phase!r} from the checkpoint "
                f"({type(err).__name__}: {err}); the models' parameters changed?"
            ) from None

    def sharded_state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """({"state": this rank's shards of the moments}, {"param_groups": hyperparameters})."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(self.container, self.optimizer)
        return {"state": state["state"]}, {"param_groups": state["param_groups"]}

    def load_sharded_state_dict(self, tensors: dict[str, Any], extra: dict[str, Any]) -> None:
        self.load_state_dict(
            {"state": tensors.get("state", {}), "param_groups": extra["param_groups"]}, False
        )


@dataclass
class SchedulerState:
    """A LambdaLR's state without its multiplier object (rebuilt from the config)."""

    scheduler: Any

    def state_dict(self) -> dict[str, Any]:
        return scheduler_state(self.scheduler)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_scheduler_state(self.scheduler, state)


class ByName(dict):
    """{name: Stateful} saved as {name: state}; names the checkpoint lacks keep their current state
    (optimizers, schedulers and grad scalers per phase)."""

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.items()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        for name, part in self.items():
            if name in (state or {}):
                part.load_state_dict(state[name])

    def sharded_state_dict(self, only: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        parts = {
            name: part.sharded_state_dict() for name, part in self.items() if only is None or name in only
        }
        return {n: t for n, (t, _) in parts.items()}, {n: e for n, (_, e) in parts.items()}

    def load_sharded_state_dict(self, tensors: dict[str, Any], extra: dict[str, Any]) -> None:
        for name, part in self.items():
            if name in tensors:
                part.load_sharded_state_dict(tensors[name], (extra or {}).get(name, {}))


def is_sharded_part(part: Any) -> bool:
    """Saved as shards under FSDP2: the weights, the EMA and the optimizers."""
    if isinstance(part, ByName):
        return bool(part) and all(isinstance(p, OptimizerState) for p in part.values())
    return isinstance(part, ModelWeights | EMAWeights | OptimizerState)


def is_optimizer_part(part: Any) -> bool:
    """Left out of an inference-only best.pth."""
    return isinstance(part, OptimizerState) or (
        isinstance(part, ByName) and any(isinstance(p, OptimizerState) for p in part.values())
    )


# ------------------------------------------------------------------------------------------ RNG streams


@dataclass
class RNGStreams:
    """`rng`: every rank's Python, numpy, torch (and CUDA) generator states, in rank order (a
    collective: every rank saves). A rank the saving run did not have gets a fresh stream of its own,
    `rank_seed(reseed(), rank)`."""

    env: D.DistEnv
    reseed: Callable[[], int]

    def state_dict(self) -> list[Any]:
        return D.gather_objects(ckpt_io.capture_rng_state(), self.env)

    def load_state_dict(self, state: list[Any] | None) -> None:
        states = state or []
        if self.env.rank < len(states):
            ckpt_io.restore_rng_state(states[self.env.rank])
        else:  # more ranks than the run that saved: new ranks get fresh, distinct streams
            D.seed_everything(D.rank_seed(self.reseed(), self.env.rank))


@dataclass
class Saved:
    """What a checkpoint records but a resume does not load back (the run's identity, the task's
    export_state: the trainer reads those before the run is built)."""

    make: Callable[[], Any]

    def state_dict(self) -> Any:
        return self.make()

    def load_state_dict(self, state: Any) -> None:
        pass


# ------------------------------------------------------------------------------------------- manager


@dataclass
class _Entry:
    key: str | None
    part: Stateful
    collective: bool


class CheckpointManager:
    """The run's checkpoint: which pieces it holds, where its files are, and when they are written.

    `register(key, part)` puts `part.state_dict()` under `key`, or, with key None, its keys at the top
    level (several pieces share the top level of the format-1 layout). Pieces marked `collective` take
    part in a collective (an FSDP gather, the RNG gather) and are saved on every rank; the others only
    on rank 0, which alone writes files."""

    def __init__(self, ckpt_dir: Path, env: D.DistEnv, keep_last_k: int) -> None:
        self.ckpt_dir, self.env, self.keep_last_k = ckpt_dir, env, keep_last_k
        self.entries: list[_Entry] = []
        self.last_saved_step = -1
        self.sharded = False
        """FSDP2: save the weights, EMA and optimizers as DCP shards (`step_<n>.dcp/`), best.pth
        with the weights only."""
        self._last_folder: Path | None = None

    @property
    def last_path(self) -> Path:
        """The newest checkpoint written: last.pth, or the newest step_<n>.dcp folder when sharded."""
        if self.sharded and self._last_folder is not None:
            return self._last_folder
        return self.ckpt_dir / "last.pth"

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "best.pth"

    def register(self, key: str | None, part: Stateful, *, collective: bool = False) -> None:
        self.entries.append(_Entry(key, part, collective))

    def __getitem__(self, key: str) -> Stateful:
        return next(entry.part for entry in self.entries if entry.key == key)

    # ------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint dict: complete on rank 0, only the collective pieces elsewhere (every rank
        must call it)."""
        out: dict[str, Any] = {}
        for entry in self.entries:
            if not (entry.collective or self.env.is_main_process):
                continue
            state = entry.part.state_dict()
            if entry.key is None:
                out.update(state)
            else:
                out[entry.key] = state
        return out

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore every piece, in registration order (the shards of a sharded checkpoint first read
        from its folder into this run's layout, whatever the world size that wrote it)."""
        tensors = self._read_shards(checkpoint) if dcp_files.FOLDER_KEY in checkpoint else None
        for entry in self.entries:
            state = checkpoint if entry.key is None else checkpoint.get(entry.key)
            if tensors is not None and is_sharded_part(entry.part):
                mine = tensors if entry.key is None else tensors.get(entry.key, {})
                entry.part.load_sharded_state_dict(mine, state or {})
            else:
                entry.part.load_state_dict(state)

    def _read_shards(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """This rank's tensors of a sharded checkpoint: the current state of the sharded pieces as the
        template (only what the checkpoint holds), filled by DCP."""
        layout: dict[str, list[str]] = checkpoint[dcp_files.LAYOUT_KEY]
        template: dict[str, Any] = {}
        for entry in self.entries:
            if not is_sharded_part(entry.part):
                continue
            if isinstance(entry.part, ByName):
                tensors, _ = entry.part.sharded_state_dict(only=layout.get(entry.key or "", []))
            else:
                tensors, _ = entry.part.sharded_state_dict()
            top = tensors if entry.key is None else {entry.key: tensors}
            for key, value in top.items():
                if key in layout:
                    template[key] = {name: v for name, v in value.items() if name in layout[key]}
        dcp_files.load(template, Path(checkpoint[dcp_files.FOLDER_KEY]))
        return template

    # ------------------------------------------------------------------------------------ files

    def save(self, step: int, *, periodic: bool, best: bool = False) -> None:
        """Write step_<n>.pth (periodic, when keep_last_k > 0), last.pth, and best.pth (on improvement).
        Every rank calls it (pieces gather); rank 0 writes. Sharded: step_<n>.dcp/ (every rank writes
        its shards) and an inference-only best.pth."""
        if self.sharded:
            self._save_sharded(step, best)
            return
        state = self.state_dict()
        self.last_saved_step = step
        if not self.env.is_main_process:
            return
        if periodic and self.keep_last_k > 0:
            step_path = self.ckpt_dir / f"step_{step}.pth"
            ckpt_io.atomic_save(state, step_path)
            ckpt_io.atomic_copy(step_path, self.last_path)
            ckpt_io.prune_step_files(self.ckpt_dir, self.keep_last_k)
        else:
            ckpt_io.atomic_save(state, self.last_path)
        if best:
            ckpt_io.atomic_copy(self.last_path, self.best_path)

    def _save_sharded(self, step: int, best: bool) -> None:
        main = self.env.is_main_process
        tensors: dict[str, Any] = {}
        small: dict[str, Any] = {}
        layout: dict[str, list[str]] = {}
        for entry in self.entries:
            if is_sharded_part(entry.part):
                part_tensors, extra = entry.part.sharded_state_dict()
                top = part_tensors if entry.key is None else {entry.key: part_tensors}
                tensors.update(top)
                layout.update({key: sorted(value) for key, value in top.items()})
                state = extra
            elif entry.collective or main:
                state = entry.part.state_dict()
            else:
                continue
            if entry.key is None:
                small.update(state)
            else:
                small[entry.key] = state
        small[dcp_files.LAYOUT_KEY] = layout
        if best:
            # Inference weights only, gathered a unit at a time to rank 0's CPU: no optimizer state.
            inference = {}
            for entry in self.entries:
                if is_optimizer_part(entry.part) or not (entry.collective or main):
                    continue
                state = entry.part.state_dict()
                inference.update(state if entry.key is None else {entry.key: state})
            if main:
                inference["inference_only"] = True
                ckpt_io.atomic_save(inference, self.best_path)
        keep = self.keep_last_k
        self._last_folder = dcp_files.save(
            tensors, small if main else None, self.ckpt_dir, step, self.env, keep
        )
        self.last_saved_step = step

    def find(self, resume: str | None) -> dict[str, Any] | None:
        """The checkpoint to resume (`--resume PATH`, `--resume auto`, or None for a new run, which
        refuses a folder that already holds checkpoints). Under `auto` rank 0 chooses, so every rank
        resumes from the same file even if one save raced the scan."""
        existing = ckpt_io.existing_checkpoints(self.ckpt_dir)
        if resume is None:
            if existing:
                raise UserError(
                    f"{self.ckpt_dir} already holds checkpoints ({', '.join(p.name for p in existing)}) from "
                    "an earlier run; continue it with --resume auto, or choose another --work_dir "
                    "(or training.run_name) for a new run"
                )
            return None
        if resume != "auto":
            checkpoint = ckpt_io.load_for_resume(resume)
            if checkpoint.get("inference_only"):
                raise UserError(
                    f"--resume: {resume} holds the weights of an FSDP run for inference only (no optimizer "
                    f"state); resume from its sharded checkpoint (--resume auto, or a step_<n>.dcp folder)"
                )
            return checkpoint
        found = ckpt_io.find_resume_checkpoint(self.ckpt_dir) if self.env.is_main_process else None
        path = D.broadcast_object(str(found[0]) if found else None, self.env)
        if path is None:
            log.info("--resume auto: no checkpoint in %s yet, starting a new run", self.ckpt_dir)
            return None
        log.info("--resume auto: continuing from %s", path)
        return found[1] if found else ckpt_io.load_for_resume(path)


def _section_defaults(cfg: Config, section: str) -> dict[str, Any]:
    """The default values of a config section as plain JSON types ({} when they cannot be built)."""
    model = getattr(cfg, section, None)
    try:
        return type(model)().model_dump(mode="json")  # type: ignore[attr-defined]
    except Exception:  # not a pydantic section, or one without defaults for every key
        return {}


def _without_new_defaults(old: Any, new: Any, defaults: Any) -> Any:
    """`new` without the keys the old config lacks whose value is still the default: a key added in a
    later version (e.g. music_model.unconditional_prob) must not stop an old checkpoint resuming."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    defaults = defaults if isinstance(defaults, dict) else {}
    out = {}
    for key, value in new.items():
        if key not in old:
            if key in defaults and defaults[key] == value:
                continue
            out[key] = value
        else:
            out[key] = _without_new_defaults(old[key], value, defaults.get(key))
    return out


def check_compatible(checkpoint: dict[str, Any], task_name: str, cfg: Config) -> None:
    """A resume must be of the same task with the same model configuration (training keys may change;
    keys the checkpoint's config predates are ignored while they keep their default value)."""
    if checkpoint.get("task") != task_name:
        raise UserError(
            f"the checkpoint belongs to task {checkpoint.get('task')!r}, not {task_name!r}; "
            f"resume it with `cinematic train {checkpoint.get('task')}`"
        )
    section_name = getattr(cfg, "section_name", None)
    section = section_name(task_name) if section_name is not None else None
    old = (checkpoint.get("config") or {}).get(section) if section else None
    if old is None:
        return
    new = {k: v for k, v in cfg.to_dict()[section].items() if k != "training"}
    old = {k: v for k, v in old.items() if k != "training"}
    new = _without_new_defaults(old, new, _section_defaults(cfg, section))
    diffs = ckpt_io.config_differences(old, new, f"{section}.")
    if diffs:
        raise UserError(
            "cannot resume: the model configuration differs from the checkpoint's\n  "
            + "\n  ".join(diffs)
            + "\n(resume with the checkpoint's config: --resume PATH without --config, or fix these keys)"
        )
