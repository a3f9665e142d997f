"""Speed and memory levers of a training run: `training.compile` and `training.activation_checkpointing`.

Both act on the models in place, before DDP/FSDP wraps them, and leave every parameter name as it
was: a checkpoint written with them loads without them and the other way round.

- **Activation checkpointing** (`torch.utils.checkpoint`, non-reentrant): each *block* of a model (the
  same units FSDP2 shards one by one, `distributed.shard_units`: the elements of its ModuleLists made
  of layers: transformer blocks, HiFi-GAN stages) keeps only its inputs in the forward pass and is run
  again in the backward pass. The recomputation restores the RNG state the forward saw, so dropout
  draws the same masks and the gradients are those of the plain step. Only while gradients are
  recorded in training mode: validation, sampling and cached generation run the blocks as they are.
- **Compile** (`nn.Module.compile`, i.e. `torch.compile` of the module's call, which keeps the module
  and so the state-dict keys; no `_orig_mod.` prefix): the whole model, or each block under FSDP (its
  hooks sit between the blocks). Compilation happens at the first call; when it is impossible (no C++
  compiler for the CPU backend, a backend error) the model runs eagerly after one warning.

Measured effect on 2 CPU cores: docs/scale.md (`benchmarks/training_levers.py`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cinematic.training.distributed import shard_units

log = logging.getLogger("cinematic.training")


# --------------------------------------------------------------------------- activation checkpointing


def checkpoint_blocks(model: nn.Module) -> list[nn.Module]:
    """Make every block of `model` recompute its forward in backward; returns the blocks (empty when
    the model has none, e.g. a single layer)."""
    blocks = shard_units(model)
    for block in blocks:
        if getattr(block, "_cinematic_checkpointed", False):
            continue
        plain = block.forward

        @functools.wraps(plain)
        def forward(
            *args: Any, _plain: Callable[..., Any] = plain, _block: nn.Module = block, **kwargs: Any
        ) -> Any:
            if _block.training and torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)
            return _plain(*args, **kwargs)

        block.forward = forward  # an instance attribute: the module, its hooks and its names stay
        block._cinematic_checkpointed = True
    return blocks


# ------------------------------------------------------------------------------------------ compile


def compiler_problem(device: torch.device) -> str | None:
    """Why torch.compile's default backend cannot work here (None: it should). On the CPU inductor
    builds C++ kernels and needs a compiler (`CXX`, or g++/clang++/c++ on PATH); on CUDA it needs
    Triton."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (pip install triton)"
        return None
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return None
    if any(shutil.which(name) for name in ("g++", "clang++", "c++")):
        return None
    return "no C++ compiler found (install g++ or clang++, or set CXX)"


_COMPILE_FAILURES: tuple[type[BaseException], ...] = ()


def _compile_failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean 'the backend could not compile this', as opposed to an error of the
    model itself (a wrong shape raises its own error in eager mode too, and is not caught)."""
    global _COMPILE_FAILURES
    if not _COMPILE_FAILURES:
        from torch._dynamo.exc import BackendCompilerFailed

        found: list[type[BaseException]] = [BackendCompilerFailed]
        try:
            from torch._inductor.exc import CppCompileError, InductorError

            found += [CppCompileError, InductorError]
        except ImportError:  # pragma: no cover - older torch
            pass
        _COMPILE_FAILURES = tuple(found)
    return _COMPILE_FAILURES


def _with_eager_fallback(module: nn.Module, name: str) -> None:
    """Wrap the module's compiled call: a compilation failure at a call warns once and turns the module
    back to eager for good (that call included)."""
    compiled = module._compiled_call_impl

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except _compile_failures() as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            warnings.warn(
                f"training.compile: torch.compile failed for {name} ({type(err).__name__}: {first[:300]}); "
                "running it eagerly (set training.compile: false to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            module._compiled_call_impl = None
            return module._call_impl(*args, **kwargs)

    module._compiled_call_impl = call


def compile_model(
    model: nn.Module, name: str, device: torch.device, per_block: bool = False, backend: Any = "inductor"
) -> bool:
    """`torch.compile` `model` in place (or each of its blocks with `per_block`, as under FSDP2).
    Returns False, after a warning, when the backend cannot work here (the model stays eager)."""
    problem = compiler_problem(device) if backend == "inductor" else None
    if problem is not None:
        warnings.warn(
            f"training.compile: cannot compile {name}: {problem}; training it eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    targets = (shard_units(model) or [model]) if per_block else [model]
    for index, target in enumerate(targets):
        target.compile(backend=backend)
        _with_eager_fallback(target, name if target is model else f"{name} block {index}")
    return True


def apply_levers(models: dict[str, nn.Module], tcfg: Any, device: torch.device, fsdp: bool) -> None:
    """`training.activation_checkpointing` and `training.compile` on every trainable model (in place,
    before wrapping): checkpointing first, so a compiled block records the recomputation too."""
    for name, model in models.items():
        if not any(p.requires_grad for p in model.parameters()):
            continue
        if tcfg.activation_checkpointing:
            blocks = checkpoint_blocks(model)
            if not blocks:
                log.info("training.activation_checkpointing: %s has no blocks to recompute", name)
        if tcfg.compile:
            compile_model(model, name, device, per_block=fsdp)


def strip_compile_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """State-dict keys without the `_orig_mod.` that `torch.compile(model)` (the wrapper object, not
    `model.compile()`) puts in front of every name, so such weights load into a plain model."""
    if not any("_orig_mod." in key for key in state):
        return state
    return {key.replace("_orig_mod.", ""): value for key, value in state.items()}
