"""Music Transformer throughput and memory on this CPU (issue 6 benchmark), printed as JSON.

    .venv/bin/python benchmarks/music_transformer.py                 # full run (several minutes)
    .venv/bin/python benchmarks/music_transformer.py --quick         # fewer steps, same measurements

Configuration: 6 layers × 8 heads × d 512 × ff 1024, vocabulary 388, relative global attention,
max_relative_position = sequence length, dropout 0.1, 2 threads.

- training tokens/s (forward + backward + the trainer's AdamW step) at batch 2 × 512 and 2 × 1024, the model
  FLOPs utilization against this machine's fp32 matmul peak (measured at start: a 2048³ GEMM on
  the same threads) counting the FLOPs the chunked causal attention really does (see
  `chunked_flops_per_token`), and the peak resident memory of the training process (warm-up and
  timed steps) above its state after building the model, optimizer and batch;
- memory of one relative attention layer (forward + backward, the chunked autograd Function) against
  plain unfused attention softmax(QKᵀ)V with the same projections, at L = 1024 and 2048, batch 1,
  three ways: the peak RSS above the state after building the layer and its input, in a fresh
  process whose glibc malloc returns every block over 128 KiB to the system on free (a fixed
  MALLOC_MMAP_THRESHOLD_, so RSS follows live memory); the bytes autograd saves for backward
  (a saved_tensors_hooks count of the distinct storages, the parameters and input excluded); and the
  peak of live bytes torch's CPU allocator reports to the profiler (profile_memory=True) over a
  second forward + backward;
- generation tokens/s for 256 new tokens after a 768-token primer (so the context reaches 1024) with
  the KV cache, and without it (a full forward pass per token; `--quick` times fewer uncached steps —
  the rate is per token either way).

Each measurement runs in its own process so one's peak memory does not hide or inflate another's.
Memory figures are in MiB (2²⁰ bytes), under keys ending in _mb.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time

CONFIG = dict(vocab_size=388, num_layers=6, num_heads=8, embed_dim=512, ff_dim=1024, dropout=0.1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> None:
    """Set the kernel's peak RSS (VmHWM) of this process back to its current RSS (Linux ≥ 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_mb() -> float:
    """Peak RSS since the last _reset_peak (since the start without one)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(seq_len: int, **extra):
    import torch

    from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

    torch.manual_seed(0)
    return MusicTransformer(MusicTransformerConfig(**CONFIG, max_relative_position=seq_len, **extra))


def chunked_flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per token (matmuls only) as the model really runs them on a full sequence.

    Weights: 6·N (forward 2·N, backward 4·N; PaLM appendix B), N the non-embedding parameters (the
    output heads included), as `MusicTransformer.flops_per_token` counts them.

    Attention: `ChunkedRelativeAttention` splits the L queries into chunks [s, e) of C = query_chunk
    (the last one shorter when C does not divide L); chunk [s, e) multiplies against keys 0 … e − 1
    only (its n = e − s queries × e keys: the causal lower blocks, the masked half of the diagonal
    block included). With D = heads × head_dim, per layer and sequence:
        forward:  Q·Kᵀ 2·n·e·D, Q·Eₚᵀ 2·n·(e + 1)·D (the skew's padded table has e + 1 rows), W̃·V 2·n·e·D
        backward: W̃ᵀ·dO, dO·Vᵀ, dSᵀ·Q, dS·K 4 × 2·n·e·D; dP·Eₚ, dPᵀ·Q 2 × 2·n·(e + 1)·D
        total:    Σ_chunks 18·n·e·D + 6·n·D  =  18·D·Σ n·e + 6·D·L
    With C dividing L, Σ n·e = L(L + C)/2, so per token 9·D·(L + C) + 6·D per layer — about half of
    the 18·D·L that `flops_per_token` counts for dense L × L attention."""
    from cinematic.models.music_transformer import _query_chunks

    cfg = model.cfg
    assert cfg.attention == "global", "the staircase count is for global (chunked causal) attention"
    n = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    if cfg.tie_embeddings:
        n += cfg.num_streams * cfg.vocab_size * cfg.embed_dim
    pairs = sum((stop - start) * stop for start, stop in _query_chunks(seq_len, cfg.query_chunk))
    attention = cfg.num_layers * (18 * cfg.embed_dim * pairs + 6 * cfg.embed_dim * seq_len)
    return 6 * n + attention / seq_len


def bench_train(batch: int, seq_len: int, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from cinematic.configs import TrainingConfig
    from cinematic.training.optimizers import build_optimizer

    model = _model(seq_len).train()
    optimizer = build_optimizer([model], TrainingConfig(learning_rate=1e-4))  # as the trainer builds it
    tokens = torch.randint(3, CONFIG["vocab_size"], (batch, seq_len + 1))

    def step() -> None:
        logits = model(tokens[:, :-1])[:, 0]
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    gc.collect()
    base = _rss_mb()  # model, optimizer and batch built; the peak counts warm-up and timed steps
    _reset_peak()
    for _ in range(2):  # warm-up: optimizer state, then the allocator's steady state
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = batch * seq_len / seconds
    from common import matmul_peak_flops

    flops = chunked_flops_per_token(model, seq_len)
    peak_mb = _peak_mb() - base
    peak = matmul_peak_flops()
    return {
        "batch": batch,
        "seq_len": seq_len,
        "steps": steps,
        "seconds_per_step": round(seconds, 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "flops_per_token": round(flops),
        "mfu": round(tokens_per_s * flops / peak, 3),
        # the dense-attention count (L × L products per layer) the script used before: not what runs
        "mfu_dense_attention_count": round(tokens_per_s * model.flops_per_token(seq_len) / peak, 3),
        "peak_mb_above_model": round(peak_mb, 1),
    }


def bench_attention_memory(kind: str, seq_len: int) -> dict:
    """One attention layer's forward + backward, relative (ours, chunked) or plain unfused; run in a
    fresh process with a fixed malloc mmap threshold (set by main) so RSS follows live memory."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cinematic.models.music_transformer import (
        MusicTransformerConfig,
        RelativeMultiheadAttention,
        causal_mask,
    )

    torch.manual_seed(0)
    # no attention dropout on either side: the reference is softmax(QKᵀ)V exactly
    cfg = MusicTransformerConfig(**{**CONFIG, "dropout": 0.0}, max_relative_position=seq_len)
    attn = RelativeMultiheadAttention(cfg).train()

    def plain(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = attn.qkv(x).view(b, t, 3, cfg.num_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * cfg.head_dim**-0.5
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        return attn.out((weights @ v).transpose(1, 2).reshape(b, t, d))

    run = plain if kind == "plain" else attn

    # warm-up at 64 tokens: loads the kernels and starts the thread pool, and allocates next to nothing
    # (a warm-up at the measured length would leave the allocator holding the run's memory)
    small = torch.randn(1, 64, cfg.embed_dim, requires_grad=True)
    run(small, causal_mask(64, 0)).sum().backward()
    attn.zero_grad(set_to_none=True)
    del small

    x = torch.randn(1, seq_len, cfg.embed_dim, requires_grad=True)
    mask = causal_mask(seq_len, 0)
    existing = {t.untyped_storage().data_ptr() for t in (x, mask, *attn.parameters())}
    saved: dict[int, int] = {}  # storage address → bytes, of what autograd keeps for backward

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in existing:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    gc.collect()
    base = _rss_mb()
    _reset_peak()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = run(x, mask).sum()
    forward_peak = _peak_mb() - base
    loss.backward()
    peak = _peak_mb() - base
    del loss

    # the allocator's own count, on a second forward + backward: live bytes over the run's start
    x.grad = None
    attn.zero_grad(set_to_none=True)
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(x, mask).sum().backward()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = allocator_peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        allocator_peak = max(allocator_peak, live)
    return {
        "kind": kind,
        "seq_len": seq_len,
        "peak_mb_above_inputs": round(peak, 1),
        "forward_peak_mb_above_inputs": round(forward_peak, 1),
        "saved_for_backward_mb": round(sum(saved.values()) / 2**20, 1),
        "allocator_peak_mb": round(allocator_peak / 2**20, 1),
    }


def bench_generate(primer: int, new: int, cached: bool, timed_steps: int) -> dict:
    import torch

    model = _model(primer + new).eval()
    tokens = torch.randint(3, CONFIG["vocab_size"], (1, primer))
    steps = min(new, timed_steps)
    from cinematic.generation.music import decode_threads

    # cached decoding runs as `cinematic generate` runs it: one intra-op thread (see decode_threads)
    threads = decode_threads(torch.device("cpu")) if cached else contextlib.nullcontext()
    with torch.no_grad(), threads:
        start = time.perf_counter()
        if cached:
            cache = model.new_cache()
            logits = model(tokens, None, cache)
            for _ in range(steps):
                nxt = logits[:, 0, -1].argmax(-1).view(1, 1)
                logits = model(nxt, None, cache)
        else:
            seq = tokens
            for _ in range(steps):
                nxt = model(seq)[:, 0, -1].argmax(-1).view(1, 1)
                seq = torch.cat([seq, nxt], dim=1)
        seconds = time.perf_counter() - start
    return {
        "cached": cached,
        "primer": primer,
        "new_tokens": new,
        "timed_tokens": steps,
        "tokens_per_s": round(steps / seconds, 2),
    }


def _child(args: list[str], threads: int, env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--one", *args]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (for a contended machine)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        kind, *rest = args.one
        if kind == "train":
            result = bench_train(int(rest[0]), int(rest[1]), int(rest[2]))
        elif kind == "memory":
            result = bench_attention_memory(rest[0], int(rest[1]))
        else:
            result = bench_generate(int(rest[0]), int(rest[1]), rest[2] == "1", int(rest[3]))
        print(json.dumps(result))
        return

    steps = 2 if args.quick else 5
    report: dict = {
        "config": {**CONFIG, "attention": "relative global", "threads": args.threads},
        "quick": args.quick,
    }
    report["train"] = [_child(["train", "2", str(L), str(steps)], args.threads) for L in (512, 1024)]
    # a fixed threshold turns off glibc's sliding one, which after freeing an mmapped block keeps later
    # blocks up to that size in the heap: RSS then hides them (the old warm-up-then-measure figure)
    malloc = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    for seq_len in (1024, 2048):
        memory = {
            kind: _child(["memory", kind, str(seq_len)], args.threads, malloc)
            for kind in ("plain", "relative")
        }
        for key, name in (
            ("peak_mb_above_inputs", "ratio_relative_to_plain"),
            ("saved_for_backward_mb", "saved_ratio_relative_to_plain"),
            ("allocator_peak_mb", "allocator_peak_ratio_relative_to_plain"),
        ):
            memory[name] = round(memory["relative"][key] / max(memory["plain"][key], 1e-6), 3)
        report[f"attention_memory_L{seq_len}"] = memory
    uncached_steps = 16 if args.quick else 256
    cached = _child(["generate", "768", "256", "1", "256"], args.threads)
    uncached = _child(["generate", "768", "256", "0", str(uncached_steps)], args.threads)
    report["generate"] = {
        "cached": cached,
        "uncached": uncached,
        "speedup": round(cached["tokens_per_s"] / uncached["tokens_per_s"], 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
