"""GPU readiness check (issue 19): one script, one GPU, under 8 minutes, JSON on stdout.

    python benchmarks/gpu_check.py                          # every section
    python benchmarks/gpu_check.py --only attention_paths   # some sections (comma-separated)
    python benchmarks/gpu_check.py --out gpu_check.json     # also write the report to a file

Sections, in the order they run (each in its own try/except: a failure is recorded as its error text
and traceback tail under the section, and the others still run; a section that would start after the
time budget, `--budget` seconds, is recorded as skipped):

- `environment`: the GPU, torch/CUDA versions, the bf16 peak used for MFU — from a table of dense bf16
  tensor-core peaks by device name (H100/H200 989 TFLOP/s, A100 312, L4 121, ...), else a measured
  bf16 GEMM peak (also reported when the table knows the device).
- `attention_equivalence`: the relative-attention paths against each other on CUDA (chunked, SDPA,
  FlexAttention): forward and the gradients of q, k, v and the distance table in fp32 (TF32 off), the
  forward under bf16 autocast, and a local-attention model's logits (max |difference| over max
  |chunked|); and which of SDPA's kernels (memory-efficient, cuDNN, flash, math) accept the path's
  float mask with its gradient.
- `nccl`: a 1-process NCCL group (RANK=0, WORLD_SIZE=1, MASTER_ADDR/PORT as torchrun sets them): an
  all-reduce, a few DDP steps, and `run_training` of the music task inside the group (the trainer
  uses an existing group as it is; with one rank it does not wrap the model in DDP).
- `attention_paths`: one relative attention layer (base sizes: d 768, 12 heads) under bf16 autocast,
  forward + backward time and peak memory per path, at L = 1024 and 2048 (`--attention_batch`).
- `throughput`: training tokens/s (forward + backward + fused AdamW, bf16 autocast) and MFU against
  the bf16 peak for the base Music Transformer (12 × 768, L 2048; per attention path; FLOPs counted
  with dense L × L attention) and the base lyrics GPT (12 × 768, block 1024), and
  torch.cuda.max_memory_allocated.
- `families` (last: it starts no run once the budget is spent): each family trained a few steps
  through the trainer (`run_training`) on the demo data with the tiny preset — music (MIDI Music
  Transformer), lyrics (GPT), voice (FastSpeech 2), vocoder (HiFi-GAN, both GAN phases) — in fp32,
  bf16 and fp16 + GradScaler: the logged losses must be finite and fall, no skipped steps (a few
  allowed in fp16 while the scaler settles), validation before and after, samples or tokens per
  second, and the trainer's warnings.

Exit status 0 when every section that ran passed, 1 otherwise. Without CUDA it prints
{"cuda": false, "message": ...} and exits 0 (`--device cpu` runs the same plumbing on a CPU at toy
sizes, to test this script; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

SECTIONS = ("environment", "attention_equivalence", "nccl", "attention_paths", "throughput", "families")
FAMILIES = ("music", "lyrics", "voice", "vocoder")
PRECISIONS = {"fp32": "false", "bf16": "bf16", "fp16": "fp16"}  # training.amp per precision
IMPLS = ("chunked", "sdpa", "flex")

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; the first name
# contained in torch.cuda.get_device_name() wins, so the more specific names come first.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 6000 Ada", 364.0),
)


def table_peak_tflops(name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


class Check:
    """The run's report, its deadline and the options every section reads."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        if self.device.type == "cuda" and self.device.index is None:  # set_device and NCCL want an index
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.cuda = self.device.type == "cuda"
        self.start = time.perf_counter()
        self.deadline = self.start + args.budget
        self.report: dict[str, Any] = {"cuda": self.cuda, "sections": {}}
        self.peak_flops: float | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.report["workdir"] = str(self.workdir)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, fn: Callable[[Check], dict[str, Any]]) -> None:
        if self.args.only and name not in self.args.only:
            return
        if self.left() <= 0:
            self.report["sections"][name] = {
                "ok": False,
                "skipped": f"time budget ({self.args.budget} s) spent",
            }
            return
        began = time.perf_counter()
        try:
            result = fn(self)
            result.setdefault("ok", True)
        except Exception as err:  # noqa: BLE001 — recorded, and the next section runs
            result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": _tail()}
        result["seconds"] = round(time.perf_counter() - began, 1)
        self.report["sections"][name] = result
        if self.args.out:  # the report so far, in case the run is cut short
            self.args.out.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        if self.cuda:
            torch.cuda.empty_cache()
        print(
            f"gpu_check: {name}: {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)",
            file=sys.stderr,
        )

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def _tail(lines: int = 12) -> str:
    return "".join(traceback.format_exc().splitlines(keepends=True)[-lines:])


def _guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A sub-measurement in its own try/except: its error is recorded and its siblings still run."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        return {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": _tail(8)}


def _all_ok(results: Any) -> bool:
    """False when any nested dict says ok: false."""
    if isinstance(results, dict):
        return results.get("ok", True) is not False and all(_all_ok(v) for v in results.values())
    if isinstance(results, list):
        return all(_all_ok(v) for v in results)
    return True


def _mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _autocast(check: Check, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(check.device.type, dtype=dtype)


# ------------------------------------------------------------------------------------- environment


def measured_bf16_peak(check: Check) -> float:
    """Best rate of an n³ bf16 GEMM (2n³ FLOPs) on this device."""
    n = 8192 if check.cuda else 512
    a = torch.randn(n, n, device=check.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=check.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    check.sync()
    best = math.inf
    for _ in range(10):
        began = time.perf_counter()
        a @ b
        check.sync()
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best


def environment(check: Check) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda}
    measured = measured_bf16_peak(check)
    out["measured_bf16_matmul_tflops"] = round(measured / 1e12, 1)
    if check.cuda:
        props = torch.cuda.get_device_properties(check.device)
        name = props.name
        out.update(
            device=name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
        )
        table = table_peak_tflops(name)
    else:
        name, table = "cpu", None
    if table is not None:
        check.peak_flops = table * 1e12
        out.update(peak_bf16_tflops=table, peak_source="table of dense bf16 peaks by device name")
    else:
        check.peak_flops = measured
        out.update(
            peak_bf16_tflops=round(measured / 1e12, 1),
            peak_source="measured bf16 GEMM (device not in the table)",
        )
    check.report["device"] = name
    return out


def _peak(check: Check) -> float:
    if check.peak_flops is None:
        check.peak_flops = measured_bf16_peak(check)
    return check.peak_flops


# --------------------------------------------------------------------------------------- attention


def _attention_layer(check: Check, impl: str, embed_dim: int, heads: int, max_rel: int, **extra: Any):
    from cinematic.models.music_transformer import MusicTransformerConfig, RelativeMultiheadAttention

    torch.manual_seed(0)
    cfg = MusicTransformerConfig(
        vocab_size=8,
        num_heads=heads,
        embed_dim=embed_dim,
        dropout=0.0,
        max_relative_position=max_rel,
        attention_impl=impl,
        **extra,
    )
    return RelativeMultiheadAttention(cfg).to(check.device)


def _attend_once(
    check: Check, impl: str, h: int, d: int, q0: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor,
    upstream: torch.Tensor, mask: torch.Tensor, backward: bool,
) -> dict[str, Any]:  # fmt: skip
    """One path's output and gradients (fp32, TF32 off) and its output under bf16 autocast."""
    attn = _attention_layer(check, impl, h * d, h, max_rel=100).train()
    with torch.no_grad():  # relative logits as large as the content ones
        attn.relative_embeddings.mul_(25.0)
    q, k, v = (x.clone().requires_grad_(backward) for x in (q0, k0, v0))
    grads = None
    with _no_tf32():
        y = attn.attend(q, k, v, mask)
        if backward:
            grads = torch.autograd.grad((y * upstream).sum(), [q, k, v, attn.relative_embeddings])
        with torch.autocast(check.device.type, dtype=torch.bfloat16), torch.no_grad():
            # as in the model, q/k/v arrive in bf16 (from a Linear under autocast)
            y16 = attn.attend(*(x.detach().bfloat16() for x in (q, k, v)), mask)
    return {"y": y.detach(), "grads": grads, "y_bf16": y16.float()}


def _relative(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).abs().max() / ref.float().abs().max().clamp(min=1e-12))


def attention_equivalence(check: Check) -> dict[str, Any]:
    from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig, causal_mask

    b, h, d, length = 2, 4, 32, 300
    out: dict[str, Any] = {"shape": {"batch": b, "heads": h, "head_dim": d, "queries": length}}
    can_backward = check.cuda  # FlexAttention has no backward on CPU
    for past in (0, 37):
        gen = torch.Generator(device=check.device).manual_seed(past)
        shape_q, shape_k = (b, h, length, d), (b, h, length + past, d)
        q0, k0, v0 = (
            torch.randn(shape, device=check.device, generator=gen) for shape in (shape_q, shape_k, shape_k)
        )
        upstream = torch.randn(shape_q, device=check.device, generator=gen)
        mask = causal_mask(length, past, check.device)
        results: dict[str, Any] = {}
        for impl in IMPLS:
            backward = impl != "flex" or can_backward
            results[impl] = _guarded(
                lambda impl=impl, backward=backward, tensors=(q0, k0, v0, upstream, mask): _attend_once(
                    check, impl, h, d, *tensors, backward
                )
            )
        ref = results["chunked"]
        rows: dict[str, Any] = {}
        for impl in ("sdpa", "flex"):
            got = results[impl]
            if "error" in got or "error" in ref:
                rows[impl] = got if "error" in got else {"ok": False, "error": "chunked path failed"}
                continue
            # max |difference| relative to max |chunked| (fp32, TF32 off; and the bf16 forward)
            row = {
                "forward": _relative(got["y"], ref["y"]),
                "forward_bf16": _relative(got["y_bf16"], ref["y_bf16"]),
            }
            if got["grads"] is not None:
                for name, a, r in zip(("q", "k", "v", "table"), got["grads"], ref["grads"], strict=True):
                    row[f"grad_{name}"] = _relative(a, r)
            fp32 = [v for key, v in row.items() if key != "forward_bf16"]
            row["ok"] = max(fp32) < 1e-4 and row["forward_bf16"] < 3e-2
            rows[impl] = row
        out[f"past_{past}"] = rows

    def local() -> dict[str, Any]:
        torch.manual_seed(1)
        cfg = MusicTransformerConfig(
            vocab_size=50, num_layers=2, num_heads=4, embed_dim=128, dropout=0.0, attention="local",
            local_block_length=64, max_relative_position=200, condition_sizes=(3,),
        )  # fmt: skip
        models = {}
        for impl in IMPLS:
            from dataclasses import replace

            model = MusicTransformer(replace(cfg, attention_impl=impl)).to(check.device).eval()
            if models:
                model.load_state_dict(next(iter(models.values())).state_dict())
            models[impl] = model
        tokens = torch.randint(0, 50, (2, 300), device=check.device)
        with torch.no_grad(), _no_tf32():
            logits = {impl: m(tokens) for impl, m in models.items()}
        diffs = {impl: _relative(logits[impl], logits["chunked"]) for impl in ("sdpa", "flex")}
        return {"logits_relative_max_diff": diffs, "ok": max(diffs.values()) < 1e-4}

    out["local_model"] = _guarded(local)
    out["sdpa_backends"] = sdpa_backends(check) if check.cuda else {"skipped": "CPU"}
    out["ok"] = _all_ok(out)
    return out


def sdpa_backends(check: Check) -> dict[str, Any]:
    """Which of SDPA's fused kernels take the SDPA path's float mask with its gradient (bf16, L 1024):
    each backend alone, forward + backward; "error" when it refuses (torch then picks another)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from cinematic.models.music_transformer import causal_mask

    attn = _attention_layer(check, "sdpa", 768, 12, max_rel=1024).train()
    x = torch.randn(2, 1024, 768, device=check.device, requires_grad=True)
    mask = causal_mask(1024, 0, check.device)
    out: dict[str, Any] = {}
    for backend in ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "FLASH_ATTENTION", "MATH"):
        if not hasattr(SDPBackend, backend):
            continue

        def one(backend: str = backend) -> dict[str, Any]:
            with sdpa_kernel([getattr(SDPBackend, backend)]), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with _autocast(check, torch.bfloat16):
                    y = attn(x, mask)
                y.float().sum().backward()
            check.sync()
            attn.zero_grad(set_to_none=True)
            return {"runs": True}

        result = _guarded(one)
        result.pop("ok", None)  # a refusing backend is information, not a failure
        result.pop("traceback", None)
        out[backend.lower()] = result
    return out


def _time_layer(check: Check, attn: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Forward + backward of one layer under bf16 autocast: compile/warm-up time, best and median step
    time, and the peak memory of a step above what was allocated before it."""
    from cinematic.models.music_transformer import causal_mask

    mask = causal_mask(x.size(1), 0, check.device)
    autocast = _autocast(check, torch.bfloat16)

    def step() -> None:
        with autocast:
            y = attn(x, mask)
        y.float().sum().backward()

    began = time.perf_counter()
    step()  # FlexAttention compiles here
    check.sync()
    first = time.perf_counter() - began
    step()
    check.sync()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        check.sync()
        times.append(time.perf_counter() - began)
    attn.zero_grad(set_to_none=True)
    x.grad = None
    out: dict[str, Any] = {
        "first_step_s": round(first, 2),
        "best_ms": round(min(times) * 1e3, 2),
        "median_ms": round(sorted(times)[len(times) // 2] * 1e3, 2),
    }
    if check.cuda:
        torch.cuda.synchronize(check.device)
        base = torch.cuda.memory_allocated(check.device)
        torch.cuda.reset_peak_memory_stats(check.device)
        step()
        check.sync()
        out["peak_mb_above_inputs"] = _mib(torch.cuda.max_memory_allocated(check.device) - base)
        attn.zero_grad(set_to_none=True)
        x.grad = None
    return out


def attention_paths(check: Check) -> dict[str, Any]:
    toy = not check.cuda
    embed_dim, heads = (128, 4) if toy else (768, 12)
    lengths = (128, 256) if toy else (1024, 2048)
    batch = check.args.attention_batch
    out: dict[str, Any] = {
        "layer": {"embed_dim": embed_dim, "heads": heads, "batch": batch, "autocast": "bf16", "dropout": 0.0},
    }
    for length in lengths:
        rows: dict[str, Any] = {}
        for impl in IMPLS:
            if impl == "flex" and not check.cuda:
                rows[impl] = {"skipped": "no FlexAttention backward on CPU"}
                continue
            if check.left() < (120 if impl == "flex" else 30):  # flex compiles first (~a minute)
                rows[impl] = {"skipped": "time budget"}
                continue

            def one(impl: str = impl, length: int = length) -> dict[str, Any]:
                attn = _attention_layer(check, impl, embed_dim, heads, max_rel=length).train()
                x = torch.randn(batch, length, embed_dim, device=check.device, requires_grad=True)
                return _time_layer(check, attn, x, repeats=3 if toy else 10)

            rows[impl] = _guarded(one)
        chunked = rows.get("chunked", {})
        for impl in ("sdpa", "flex"):
            row = rows.get(impl, {})
            if "best_ms" in row and "best_ms" in chunked:
                row["speedup_vs_chunked"] = round(chunked["best_ms"] / row["best_ms"], 2)
                if "peak_mb_above_inputs" in row:
                    row["memory_vs_chunked"] = round(
                        row["peak_mb_above_inputs"] / max(chunked["peak_mb_above_inputs"], 1e-6), 2
                    )
        out[f"L{length}"] = rows
    out["ok"] = _all_ok(out)
    return out


# --------------------------------------------------------------------------------------- throughput


def _train_rate(
    check: Check, model: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], batch_tokens: int,
    make_batch: Callable[[], torch.Tensor], steps: int,
) -> dict[str, Any]:  # fmt: skip
    from cinematic.configs import TrainingConfig
    from cinematic.training.optimizers import build_optimizer

    optimizer = build_optimizer([model], TrainingConfig(learning_rate=1e-4))  # fused AdamW, as the trainer
    data = [make_batch() for _ in range(2)]

    def step(i: int) -> torch.Tensor:
        with _autocast(check, torch.bfloat16):
            loss = loss_fn(data[i % 2])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    if check.cuda:
        torch.cuda.reset_peak_memory_stats(check.device)
    began = time.perf_counter()
    for i in range(2):
        step(i)
    check.sync()
    warmup = time.perf_counter() - began
    began = time.perf_counter()
    losses = [step(i) for i in range(steps)]
    check.sync()
    seconds = (time.perf_counter() - began) / steps
    out = {
        "warmup_s": round(warmup, 2),
        "seconds_per_step": round(seconds, 4),
        "tokens_per_s": round(batch_tokens / seconds, 1),
        "loss_finite": bool(torch.isfinite(torch.stack(losses)).all()),
    }
    if check.cuda:
        out["max_memory_allocated_mb"] = _mib(torch.cuda.max_memory_allocated(check.device))
    out["ok"] = out["loss_finite"]
    return out


def throughput(check: Check) -> dict[str, Any]:
    from dataclasses import replace

    import torch.nn.functional as F

    from cinematic import registry
    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig, padded_vocab_size
    from cinematic.models.music_transformer import MusicTransformer
    from cinematic.tasks.music import active_conditions, model_config

    toy = not check.cuda
    cfg = registry.load_config("tiny" if toy else "base")
    peak = _peak(check)
    out: dict[str, Any] = {"peak_bf16_tflops": round(peak / 1e12, 1), "autocast": "bf16"}
    steps = 2 if toy else 10

    section = cfg.music_model
    labels = {name: ["<none>", "a", "b", "c"] for name in active_conditions(section)}
    music_cfg = model_config(section, vocab_size=391, labels=labels)
    length, batch = section.max_seq_len, check.args.music_batch
    music: dict[str, Any] = {
        "config": {"layers": music_cfg.num_layers, "heads": music_cfg.num_heads, "embed_dim": music_cfg.embed_dim,
                   "seq_len": length, "batch": batch},
    }  # fmt: skip
    for impl in IMPLS:
        if impl == "flex" and not check.cuda:
            music[impl] = {"skipped": "no FlexAttention backward on CPU"}
            continue
        if check.left() < (180 if impl == "flex" else 60):
            music[impl] = {"skipped": "time budget"}
            continue

        def one(impl: str = impl) -> dict[str, Any]:
            torch.manual_seed(0)
            model = MusicTransformer(replace(music_cfg, attention_impl=impl)).to(check.device).train()
            conditions = torch.ones(batch, len(labels), dtype=torch.long, device=check.device)

            def loss_fn(tokens: torch.Tensor) -> torch.Tensor:
                logits = model(tokens[:, :-1], conditions)[:, 0]
                return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())

            def make_batch() -> torch.Tensor:
                return torch.randint(3, 391, (batch, length + 1), device=check.device)

            row = _train_rate(check, model, loss_fn, batch * length, make_batch, steps)
            flops = model.flops_per_token(length)  # dense L × L attention: what the fused kernels compute
            row.update(flops_per_token=round(flops), mfu=round(row["tokens_per_s"] * flops / peak, 4))
            return row

        music[impl] = _guarded(one)
    out["music_transformer"] = music

    def gpt() -> dict[str, Any]:
        section = cfg.lyrics_model
        gpt_cfg = LyricsGPTConfig(
            vocab_size=padded_vocab_size(section.vocab_size), block_size=section.max_seq_len,
            n_layer=section.num_layers, n_head=section.num_heads, n_embd=section.embed_dim,
            dropout=section.dropout, tie_embeddings=section.tie_embeddings,
        )  # fmt: skip
        torch.manual_seed(0)
        model = LyricsGPT(gpt_cfg).to(check.device).train()
        batch, block = check.args.gpt_batch, gpt_cfg.block_size

        def make_batch() -> torch.Tensor:
            return torch.randint(0, gpt_cfg.vocab_size, (batch, block + 1), device=check.device)

        def loss_fn(tokens: torch.Tensor) -> torch.Tensor:
            return model(tokens[:, :-1], tokens[:, 1:])[1]

        row = _train_rate(check, model, loss_fn, batch * block, make_batch, steps)
        flops = model.flops_per_token(block)
        row.update(
            config={"layers": gpt_cfg.n_layer, "heads": gpt_cfg.n_head, "embed_dim": gpt_cfg.n_embd,
                    "block": block, "batch": batch, "vocab": gpt_cfg.vocab_size},
            flops_per_token=round(flops),
            mfu=round(row["tokens_per_s"] * flops / peak, 4),
        )  # fmt: skip
        return row

    out["lyrics_gpt"] = _guarded(gpt)
    out["ok"] = _all_ok(out)
    return out


# ----------------------------------------------------------------------------------------- families


class ScalarLog:
    """Records every scalar dict the trainer logs (RunLogger.scalars), whatever the logger backend."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        from cinematic.training import logging as run_logging

        original = run_logging.RunLogger.scalars
        rows = self.rows

        def scalars(logger: Any, values: dict[str, float], step: int) -> None:
            rows.append((step, dict(values)))
            original(logger, values, step)

        run_logging.RunLogger.scalars = scalars  # type: ignore[method-assign]
        try:
            yield
        finally:
            run_logging.RunLogger.scalars = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _warnings_logged() -> Iterator[list[str]]:
    """The messages of the log records at WARNING or above while the block runs (any logger)."""
    import logging

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])

    handler = Collect(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield messages
    finally:
        root.removeHandler(handler)


def demo_data(check: Check) -> Path:
    root = check.workdir / "data"
    if not (root / "music").is_dir():
        from cinematic.data.demo import write_demo_data

        write_demo_data(root, seed=0)
    return root


def train_family(
    check: Check, name: str, precision: str, steps: int, run_name: str | None = None
) -> dict[str, Any]:
    """`run_training` of one family on the demo data (tiny preset) in one precision, with what its
    logged scalars and validation say."""
    from cinematic import registry
    from cinematic.training.trainer import run_training

    data_root = demo_data(check)
    family = registry.get(name)
    data_dir = data_root / ("voice" if name in ("voice", "vocoder") else (family.data_subdir or name))
    log_every = max(1, min(5, steps // 4))
    overrides = [
        f"training.max_steps={steps}",
        f"training.amp={PRECISIONS[precision]}",
        f"training.work_dir={check.workdir / 'work'}",  # one work_dir: the feature caches are shared
        f"training.run_name={run_name or f'{name}_{precision}'}",
        "training.validate_at_start=true",
        f"training.validate_every_steps={steps}",
        f"training.checkpoint_every_steps={steps}",
        "training.keep_last_k=1",
        "logging.logger=none",
        "logging.progress_bar=false",
        "logging.heartbeat_seconds=null",
        f"logging.log_every_steps={log_every}",
        *check.args.set,
    ]
    cfg = registry.load_config("tiny", overrides)
    task = registry.routed(family, cfg, data_dir, None).task_instance()
    log = ScalarLog()
    began = time.perf_counter()
    with log.capture(), _warnings_logged() as logged:
        result = run_training(task, cfg, data_dir)
    seconds = time.perf_counter() - began
    rows = [values for _, values in log.rows]
    losses = {key: [r[key] for r in rows if key in r] for key in sorted({k for r in rows for k in r})}
    loss_keys = [k for k in losses if k.startswith("train/loss")]
    finite = all(math.isfinite(v) for key in loss_keys for v in losses[key])
    train = losses.get("train/loss", [])
    rate_key = next((k for k in losses if k.endswith("_per_s")), None)
    before = (result.metrics_before or {}).get("val/loss")
    after = (result.metrics_after or {}).get("val/loss")
    skips = losses.get("train/nan_skips", [0.0])[-1]
    out: dict[str, Any] = {
        "steps": result.step,
        "seconds": round(seconds, 1),
        "train_loss_first_window": train[0] if train else None,
        "train_loss_last_window": train[-1] if train else None,
        "phase_losses": {
            k: [round(losses[k][0], 4), round(losses[k][-1], 4)] for k in loss_keys if k != "train/loss"
        },
        "val_loss_before": before,
        "val_loss_after": after,
        "nan_skips": skips,
        "rate": {rate_key: round(losses[rate_key][-1], 1)} if rate_key else None,
        "losses_finite": finite,
        "warnings": logged[:10],  # log records at WARNING and above (a failed sample is only a warning)
    }
    falls = bool(train) and train[-1] < train[0]
    val_falls = before is None or after is None or after < before
    # fp16's GradScaler may skip a few first steps while its scale settles; other precisions none
    allowed_skips = max(2, steps // 4) if precision == "fp16" else 0
    out["loss_falls"] = falls
    out["val_loss_falls"] = val_falls
    out["ok"] = finite and falls and skips <= allowed_skips and (after is None or math.isfinite(after))
    return out


def families(check: Check) -> dict[str, Any]:
    names = [n for n in FAMILIES if not check.args.families or n in check.args.families]
    precisions = [p for p in PRECISIONS if not check.args.precisions or p in check.args.precisions]
    out: dict[str, Any] = {}
    for name in names:
        rows: dict[str, Any] = {}
        for precision in precisions:
            if check.left() < 15:
                rows[precision] = {"ok": False, "skipped": "time budget"}
                continue
            rows[precision] = _guarded(
                lambda n=name, p=precision: train_family(check, n, p, check.args.family_steps)
            )
        out[name] = rows
    out["ok"] = _all_ok(out)
    return out


# --------------------------------------------------------------------------------------------- nccl


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nccl(check: Check) -> dict[str, Any]:
    import torch.distributed as dist

    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig

    backend = "nccl" if check.cuda else "gloo"
    env = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    out: dict[str, Any] = {"backend": backend, "env": env}
    try:
        dist.init_process_group(backend=backend, device_id=check.device if check.cuda else None)
        out["initialized"] = dist.is_initialized()
        out["world_size"] = dist.get_world_size()
        value = torch.full((4,), 3.0, device=check.device)
        dist.all_reduce(value)
        out["all_reduce_ok"] = bool((value == 3.0).all())

        def ddp() -> dict[str, Any]:
            torch.manual_seed(0)
            model = LyricsGPT(LyricsGPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=64))
            wrapped = torch.nn.parallel.DistributedDataParallel(
                model.to(check.device), device_ids=[check.device.index or 0] if check.cuda else None
            )
            optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
            tokens = torch.randint(0, 256, (4, 65), device=check.device)
            losses = []
            for _ in range(8):
                with _autocast(check, torch.bfloat16):
                    loss = wrapped(tokens[:, :-1], tokens[:, 1:])[1]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss))
            ok = all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
            return {"losses": [round(losses[0], 4), round(losses[-1], 4)], "ok": ok}

        out["ddp"] = _guarded(ddp)
        out["trainer"] = _guarded(
            lambda: train_family(
                check, "music", "bf16", max(4, check.args.family_steps // 2), run_name="music_nccl"
            )
        )
        out["group_still_initialized"] = dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out["ok"] = bool(out.get("all_reduce_ok")) and _all_ok(out)
    return out


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--families", default="", help=f"comma-separated subset of {', '.join(FAMILIES)}")
    parser.add_argument("--precisions", default="", help="comma-separated subset of fp32, bf16, fp16")
    parser.add_argument("--family_steps", type=int, default=40, help="trainer steps per family and precision")
    parser.add_argument("--attention_batch", type=int, default=2)
    parser.add_argument("--music_batch", type=int, default=4, help="base Music Transformer batch (L 2048)")
    parser.add_argument("--gpt_batch", type=int, default=8, help="base GPT batch (block 1024)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; later sections are skipped")
    parser.add_argument(
        "--set", action="append", default=[], help="extra config override for the family runs"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to test this script")
    parser.add_argument("--keep_workdir", action="store_true", help="keep the demo data and runs (printed)")
    args = parser.parse_args(argv)
    for key in ("only", "families", "precisions"):
        setattr(args, key, [x.strip() for x in getattr(args, key).split(",") if x.strip()])
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"cuda": False, "torch": torch.__version__,
                          "message": "no CUDA device: nothing to check (run this on a GPU machine)"}))  # fmt: skip
        return 0
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    check = Check(args)
    if check.cuda:
        torch.cuda.set_device(check.device)
    for name, fn in (
        ("environment", environment),
        ("attention_equivalence", attention_equivalence),
        ("nccl", nccl),
        ("attention_paths", attention_paths),
        ("throughput", throughput),
        ("families", families),  # last: it stops starting runs when the budget is spent
    ):
        check.run(name, fn)
    if not args.keep_workdir:
        shutil.rmtree(check.workdir, ignore_errors=True)
    report = check.report
    report["seconds"] = round(time.perf_counter() - check.start, 1)
    report["ok"] = all(section.get("ok") for section in report["sections"].values())
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
