"""Processes, devices and collectives for training under `torchrun` (or as one plain process).

`torchrun --nproc_per_node=N` (and multi-node `--nnodes/--node_rank/--rdzv_endpoint`) sets `RANK`,
`LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`; the deprecated
`python -m torch.distributed.launch` sets the same variables (and also passes `--local-rank=N`, which
the CLI accepts and ignores). Without them the run is a single process.

Backends: NCCL on CUDA, gloo on CPU. Wrapping: DDP by default, FSDP2 (`fully_shard`) with
`training.strategy: fsdp`. Every collective here is called by every rank: there is no rank-0-only
barrier anywhere in the trainer.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False
    """True when this module created the process group (and so destroys it at the end)."""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def env_rank() -> int:
    """This process's global rank from the torchrun environment (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def configure_logging(level: int = logging.INFO) -> None:
    """Python logging to stderr: INFO on rank 0, warnings and errors only on the other ranks, so an
    8-GPU run prints one copy of every progress line. Safe to call more than once."""
    rank = env_rank()
    root = logging.getLogger()
    fmt = (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
        if rank == 0
        else f"[rank {rank}] %(levelname)s %(name)s: %(message)s"
    )
    handler = next((h for h in root.handlers if getattr(h, "_cinematic", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._cinematic = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    root.setLevel(level if rank == 0 else logging.WARNING)


def init_distributed() -> DistEnv:
    """Read the torchrun environment, pick the device, and join the process group when WORLD_SIZE > 1.

    A process group that already exists (a test or a notebook created it) is used as it is."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns = False
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
    elif world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        owns = True
        log.info("joined process group: backend %s, world size %d", backend, world_size)
    return DistEnv(
        rank=rank, local_rank=local_rank, world_size=world_size, device=device, owns_process_group=owns
    )


def shutdown(env: DistEnv) -> None:
    if env.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- collectives


def any_true(flag: bool, env: DistEnv) -> bool:
    """True on every rank when `flag` is True on any rank (the NaN guard's 'skip together')."""
    if not env.is_distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def broadcast_object(obj: object, env: DistEnv) -> object:
    """Rank 0's `obj` on every rank (validation metrics, so every rank takes the same decisions)."""
    if not env.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object, env: DistEnv) -> list[object]:
    """Every rank's `obj`, in rank order, on every rank (RNG states for the checkpoint)."""
    if not env.is_distributed:
        return [obj]
    out: list[object] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def broadcast_module(model: nn.Module, env: DistEnv) -> None:
    """Rank 0's parameters and buffers on every rank (what DDP does when it wraps a model)."""
    if env.is_distributed:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(params: list[torch.Tensor], env: DistEnv) -> None:
    """DDP's gradient averaging done by hand (for multi-phase tasks): one flat all-reduce per dtype.
    A parameter without a gradient on this rank joins with zeros when another rank has one."""
    if not env.is_distributed or not params:
        return
    has_grad = torch.tensor([float(p.grad is not None) for p in params], device=env.device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for param, flag in zip(params, has_grad.tolist()):
        if flag > 0:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
    for grads in by_dtype.values():
        flat = torch._utils._flatten_dense_tensors(grads)
        flat.div_(env.world_size)
        dist.all_reduce(flat)
        for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)


# ------------------------------------------------------------------------------------------------ seeds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """A different stream per rank (dropout, noise) derived from `training.seed`."""
    return (seed + 1_000_003 * rank) % 2**63


def set_deterministic(enabled: bool) -> None:
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# ----------------------------------------------------------------------------------------------- wrapping


def wrap_model(model: nn.Module, strategy: str, env: DistEnv) -> nn.Module:
    """DDP or FSDP2 around one model; a single process or a model without trainable parameters is
    returned as it is. FSDP2 shards in place (the returned module is `model` itself), unit by unit
    (`shard_units`), then the root."""
    if not env.is_distributed or not any(p.requires_grad for p in model.parameters()):
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(env.device.type, (env.world_size,))
        for block in shard_units(model):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return _ForwardingDDP(model, device_ids=device_ids)


class _ForwardingDDP(nn.parallel.DistributedDataParallel):
    """DDP that also answers attribute reads the wrapped model answers (`model.num_updates`, a loss
    helper), so task code written for a plain module runs under torchrun. Only `forward` (calling the
    wrapper) takes part in gradient synchronisation: parameters used by another method, outside
    `forward`, are not synchronised, so keep such work inside `forward`."""

    def __getattr__(self, name: str) -> object:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules FSDP2 shards on their own before the root, innermost first: the elements of
    every `nn.ModuleList`/`nn.Sequential` (transformer blocks, discriminator stacks, the layers of a
    Sequential model) that own parameters. Shards are gathered one unit at a time, so a model never
    holds all its full weights at once. A unit whose parameters are shared with the rest of the model
    (tied embeddings) is left to its parent, since a parameter can belong to one FSDP unit only."""
    from torch.nn.utils.parametrize import ParametrizationList

    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    units: list[nn.Module] = []
    for container in reversed(list(model.modules())):  # children before their parents
        if not isinstance(container, nn.ModuleList | nn.Sequential) or isinstance(
            container, ParametrizationList
        ):
            continue
        for element in container:
            if isinstance(element, nn.ModuleList) or not any(p.requires_grad for p in element.parameters()):
                continue
            own = {id(p) for p in element.parameters()}
            inside = sum(1 for _, p in element.named_parameters(remove_duplicate=False) if id(p) in own)
            if inside == sum(uses[i] for i in own):  # no parameter is also used outside the unit
                units.append(element)
    return units


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (FSDP2 modules are the original modules)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    if "torch.distributed.fsdp" not in sys.modules:  # never imported: nothing is sharded (and 1 s saved)
        return False
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return False
    return isinstance(model, FSDPModule)
