"""Processes, devices and collectives for training under `torchrun` (or as one plain process).

`torchrun --nproc_per_node=N` (and multi-node `--nnodes/--node_rank/--rdzv_endpoint`) sets `RANK`,
`LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`; the deprecated
`python -m torch.distributed.launch` sets the same variables (and also passes `--local-rank=N`, which
the CLI accepts and ignores). Without them the run is a single process.

Backends: NCCL on CUDA (bound to this rank's GPU with `device_id`), gloo on CPU. Wrapping: DDP by
default, FSDP2 (`fully_shard`, one unit per block, `MixedPrecisionPolicy` under AMP) with
`training.strategy: fsdp`. Every collective here is called by every rank: there is no rank-0-only
barrier anywhere in the trainer.

Timeouts: the process group's collectives time out after `CINEMATIC_DIST_TIMEOUT_MIN` minutes (default
30): a rank that waits longer than that for the others (rank 0 writing a checkpoint or drawing samples)
is taken for hung. The wait at start-up while local rank 0 prepares the data
(`BuildContext.local_main_first`: feature extraction, tokenizer fitting, possibly hours) is not a
collective of that group: the other ranks wait in a barrier of a separate CPU (gloo) group whose timeout
is `CINEMATIC_BUILD_TIMEOUT_MIN` minutes (default 1440, a day). A gloo barrier has no watchdog (NCCL's
kills the process when its timeout passes), and a rank 0 that dies ends the wait at once (its
connections close; torchrun stops the job).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

DIST_TIMEOUT_ENV, DIST_TIMEOUT_DEFAULT_MIN = "CINEMATIC_DIST_TIMEOUT_MIN", 30.0
BUILD_TIMEOUT_ENV, BUILD_TIMEOUT_DEFAULT_MIN = "CINEMATIC_BUILD_TIMEOUT_MIN", 1440.0
BUCKET_BYTES = 25 * 2**20
"""Gradient bucket size of the hand-made all-reduce (`average_gradients`), DDP's default."""


def timeout_from_env(name: str, default_minutes: float) -> datetime.timedelta:
    """A timeout in minutes from the environment variable `name` (fractions allowed), else the default."""
    raw = os.environ.get(name, "").strip()
    try:
        minutes = float(raw) if raw else default_minutes
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of minutes") from None
    if minutes <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive number of minutes")
    return datetime.timedelta(minutes=minutes)


@dataclass
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False
    """True when this module created the process group (and so destroys it at the end)."""
    wait_group: object | None = None
    """The CPU (gloo) group of `wait_for_others` (None: a single process)."""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def wait_for_others(self) -> None:
        """A barrier for long one-sided waits (local rank 0 preparing data while the others wait): in
        the gloo `wait_group`, with `CINEMATIC_BUILD_TIMEOUT_MIN`'s timeout and no NCCL watchdog."""
        if self.is_distributed:
            dist.barrier(group=self.wait_group)


def env_rank() -> int:
    """This process's global rank from the torchrun environment (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is at the time of the record, not the stream it
    was created with (pytest's capture, a notebook or a redirect may have replaced and closed that)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


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
        handler = _CurrentStderr()
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
        timeout = timeout_from_env(DIST_TIMEOUT_ENV, DIST_TIMEOUT_DEFAULT_MIN)
        store = _restart_store(world_size, timeout)
        dist.init_process_group(
            backend=backend,
            timeout=timeout,
            store=store,
            rank=rank if store is not None else -1,
            world_size=world_size if store is not None else -1,
            # NCCL: bind the communicator to this rank's GPU now (no guessing the device later, and a
            # barrier that knows its device).
            device_id=device if device.type == "cuda" else None,
        )
        owns = True
        log.info("joined process group: backend %s, world size %d", backend, world_size)
    wait_group = _wait_group() if world_size > 1 else None
    return DistEnv(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        device=device,
        owns_process_group=owns,
        wait_group=wait_group,
    )


def _restart_store(world_size: int, timeout: datetime.timedelta) -> object | None:
    """After a `torchrun --max-restarts` restart: the agent's store, under a prefix of this attempt.

    torchrun keeps one key-value store for every attempt of a job, and process groups publish their
    ranks' addresses in it under names that repeat (group 0, 1, …): without the prefix a restarted
    rank may read the address a dead rank of the previous attempt published and fail to connect
    ("Connection refused"). None: the first attempt, or not under torchrun's store (plain env://)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=timeout,
    )
    return dist.PrefixStore(f"cinematic/attempt_{attempt}/", store)


_WAIT_GROUPS: list[tuple[object, object]] = []
"""(default group, its wait group): created once per process group, whatever the number of runs."""


def _wait_group() -> object:
    """The gloo group of `DistEnv.wait_for_others` for the current default group (created by every rank
    together, here at start-up: `new_group` itself waits for all ranks)."""
    world = dist.group.WORLD
    for owner, group in _WAIT_GROUPS:
        if owner is world:
            return group
    group = dist.new_group(
        backend="gloo", timeout=timeout_from_env(BUILD_TIMEOUT_ENV, BUILD_TIMEOUT_DEFAULT_MIN)
    )
    _WAIT_GROUPS[:] = [(world, group)]
    return group


def shutdown(env: DistEnv) -> None:
    if env.owns_process_group and dist.is_initialized():
        _WAIT_GROUPS.clear()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- collectives


def max_over_ranks_(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """`tensor`, in place, as its element-wise maximum over the ranks (the NaN guard's 'skip together'
    flags). Stays on the device: no host synchronisation."""
    if env.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


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


def gradient_buckets(grads: list[torch.Tensor], bucket_bytes: int = BUCKET_BYTES) -> list[list[torch.Tensor]]:
    """`grads` in buckets of one dtype and about `bucket_bytes` each, the last parameters first (the
    order backward produces them, as DDP's buckets); a gradient larger than a bucket is a bucket alone."""
    buckets: list[list[torch.Tensor]] = []
    current: dict[torch.dtype, list[torch.Tensor]] = {}
    filled: dict[torch.dtype, int] = {}
    for grad in reversed(grads):
        nbytes = grad.numel() * grad.element_size()
        bucket = current.get(grad.dtype)
        if bucket is None or filled[grad.dtype] + nbytes > bucket_bytes:
            bucket = current[grad.dtype] = []
            filled[grad.dtype] = 0
            buckets.append(bucket)
        bucket.append(grad)
        filled[grad.dtype] += nbytes
    return buckets


@torch.no_grad()
def average_gradients(params: list[torch.Tensor], env: DistEnv, bucket_bytes: int = BUCKET_BYTES) -> None:
    """DDP's gradient averaging done by hand (for multi-phase tasks): the gradients in buckets of about
    25 MB, each flattened, divided by the world size and all-reduced asynchronously, all buckets in
    flight at once, then copied back. No host synchronisation: a trainable parameter without a
    gradient on this rank takes part with zeros (every rank sends the same layout), so after the call
    every parameter that requires grad has one, the average over the ranks. (DDP, whose default refuses
    parameters unused in a step, would leave a parameter no rank used without a gradient; here the
    optimizer sees zeros, so Adam's moments and decoupled weight decay still move it: keep such
    parameters frozen.)"""
    if not env.is_distributed or not params:
        return
    grads = []
    for param in params:
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    pending = []
    for bucket in gradient_buckets(grads, bucket_bytes):
        flat = torch._utils._flatten_dense_tensors(bucket)
        flat.div_(env.world_size)
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        torch._foreach_copy_(bucket, torch._utils._unflatten_dense_tensors(flat, bucket))


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


def enable_tf32(device: torch.device, deterministic: bool) -> bool:
    """TF32 for the fp32 matrix products of a CUDA run (cuDNN convolutions use it by default already):
    ~8x the fp32 matmul rate from Ampere on, a 10-bit mantissa for the products with fp32 accumulation.
    Not with `training.deterministic`, nor on the CPU. Returns whether it is on. A process that set
    the precision through torch's newer `fp32_precision` settings keeps what it chose."""
    if device.type != "cuda" or deterministic:
        return False
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
    except RuntimeError:  # torch refuses to mix its legacy TF32 switch with the new settings in use
        return False
    return True


def enable_cudnn_benchmark(deterministic: bool) -> bool:
    """cuDNN autotuning (`cudnn.benchmark`): each convolution shape is timed once and its fastest
    algorithm kept. Worth it only when the shapes repeat (HiFi-GAN's fixed segments); the trainer
    calls this once its first micro-batches all had the same shapes. Not with `training.deterministic`."""
    if deterministic:
        return False
    torch.backends.cudnn.benchmark = True
    return True


# ----------------------------------------------------------------------------------------------- wrapping


def wrap_model(
    model: nn.Module, strategy: str, env: DistEnv, amp_dtype: torch.dtype | None = None
) -> nn.Module:
    """DDP or FSDP2 around one model; a single process or a model without trainable parameters is
    returned as it is. FSDP2 shards in place (the returned module is `model` itself), unit by unit
    (`shard_units`), then the root, with `fsdp_mixed_precision(amp_dtype)`."""
    if not env.is_distributed or not any(p.requires_grad for p in model.parameters()):
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(env.device.type, (env.world_size,))
        policy = fsdp_mixed_precision(amp_dtype)
        for block in shard_units(model):
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return _ForwardingDDP(model, device_ids=device_ids)


def fsdp_mixed_precision(amp_dtype: torch.dtype | None) -> object:
    """FSDP2's `MixedPrecisionPolicy` for a run under autocast to `amp_dtype`: parameters gathered in
    `amp_dtype` (half the all-gather traffic, and the matmuls autocast would run in that dtype anyway),
    gradients reduce-scattered in fp32 (a sum over ranks in bf16 loses bits), the sharded parameters
    and the optimizer in fp32. Without AMP: everything fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if amp_dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)


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
    """The submodules FSDP2 shards on their own before the root: the *blocks* of the model, i.e. the
    elements of its `nn.ModuleList`/`nn.Sequential` containers that are made of layers (a transformer
    block, a HiFi-GAN sub-discriminator or MRF stage, a conv + norm pair), outermost first in module
    order; nothing inside a unit becomes a unit of its own. A single layer in a container (a Linear,
    a weight-normed Conv, an Embedding) is not a unit: each would be a collective of its own for a few
    kilobytes. Nested containers (a ModuleList of ModuleLists) are looked into.

    Shards are gathered one unit at a time, so a model never holds all its full weights at once. A
    unit whose parameters are shared with the rest of the model (tied embeddings) is left to its
    parent, since a parameter can belong to one FSDP unit only."""
    from torch.nn.utils.parametrize import ParametrizationList

    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1

    def is_unit(element: nn.Module) -> bool:
        if isinstance(element, nn.ModuleList | nn.ModuleDict) or not _is_block(element):
            return False
        if not any(p.requires_grad for p in element.parameters()):
            return False
        own = {id(p) for p in element.parameters()}
        inside = sum(1 for _, p in element.named_parameters(remove_duplicate=False) if id(p) in own)
        return inside == sum(uses[i] for i in own)  # no parameter is also used outside the unit

    units: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        container = isinstance(module, nn.ModuleList | nn.Sequential) and not isinstance(
            module, ParametrizationList
        )
        for child in module.children():
            if container and is_unit(child):
                units.append(child)
            else:
                visit(child)

    visit(model)
    return units


def _is_block(module: nn.Module) -> bool:
    """Made of layers: a child module (other than a parametrization's, e.g. weight norm's) holds
    parameters."""
    from torch.nn.utils import parametrize

    skip = "parametrizations" if parametrize.is_parametrized(module) else None
    return any(
        name != skip and next(child.parameters(), None) is not None for name, child in module.named_children()
    )


@contextlib.contextmanager
def no_sync(models: Iterable[nn.Module], env: DistEnv, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP2) of `models` inside the block: every
    micro-batch but the last of an accumulation group."""
    if not enabled or not env.is_distributed:
        yield
        return
    with contextlib.ExitStack() as stack:
        for model in models:
            if isinstance(model, nn.parallel.DistributedDataParallel):
                stack.enter_context(model.no_sync())
            elif is_fsdp(model):
                model.set_requires_gradient_sync(False)
                stack.callback(model.set_requires_gradient_sync, True)
        yield


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
