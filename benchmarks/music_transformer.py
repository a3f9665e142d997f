"""Music Transformer throughput and memory on this CPU (issue 6 benchmark), printed as JSON.

    .venv/bin/python benchmarks/music_transformer.py                 # full run (several minutes)
    .venv/bin/python benchmarks/music_transformer.py --quick         # fewer steps, same measurements

Configuration: 6 layers × 8 heads × d 512 × ff 1024, vocabulary 388, relative global attention,
max_relative_position = sequence length, dropout 0.1, 2 threads.

- training tokens/s (forward + backward + the trainer's AdamW step) at batch 2 × 512 and 2 × 1024, the model
  FLOPs utilization against this machine's fp32 matmul peak (measured at start: a 2048³ GEMM on
  the same threads), and the peak resident memory of the training process above its state after
  building the model;
- memory of one relative attention layer (forward + backward) against plain unfused attention
  softmax(QKᵀ)V with the same projections at L = 2048, batch 1;
- generation tokens/s for 256 new tokens after a 768-token primer (so the context reaches 1024) with
  the KV cache, and without it (a full forward pass per token; `--quick` times fewer uncached steps —
  the rate is per token either way).

Each measurement runs in its own process so peak memory (ru_maxrss) is not polluted by the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time

CONFIG = dict(vocab_size=388, num_layers=6, num_heads=8, embed_dim=512, ff_dim=1024, dropout=0.1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(seq_len: int, **extra):
    import torch

    from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

    torch.manual_seed(0)
    return MusicTransformer(MusicTransformerConfig(**CONFIG, max_relative_position=seq_len, **extra))


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

    for _ in range(2):  # warm-up: optimizer state, then the allocator's steady state
        step()
    base = _rss_mb()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = batch * seq_len / seconds
    from common import matmul_peak_flops

    peak = matmul_peak_flops()
    return {
        "batch": batch,
        "seq_len": seq_len,
        "steps": steps,
        "seconds_per_step": round(seconds, 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "mfu": round(tokens_per_s * model.flops_per_token(seq_len) / peak, 3),
        "peak_mb_above_model": round(_peak_mb() - base, 1),
    }


def bench_attention_memory(kind: str, seq_len: int) -> dict:
    """Peak RSS of one attention layer's forward + backward, relative (ours) or plain unfused."""
    import torch

    from cinematic.models.music_transformer import (
        MusicTransformerConfig,
        RelativeMultiheadAttention,
        causal_mask,
    )

    torch.manual_seed(0)
    # no attention dropout on either side: the reference is softmax(QKᵀ)V exactly
    cfg = MusicTransformerConfig(**{**CONFIG, "dropout": 0.0}, max_relative_position=seq_len)
    attn = RelativeMultiheadAttention(cfg).train()
    x = torch.randn(1, seq_len, cfg.embed_dim, requires_grad=True)
    mask = causal_mask(seq_len, 0)

    def plain() -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = attn.qkv(x).view(b, t, 3, cfg.num_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * cfg.head_dim**-0.5
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        return attn.out((weights @ v).transpose(1, 2).reshape(b, t, d))

    run = plain if kind == "plain" else (lambda: attn(x, mask))
    run().sum().backward()  # warm-up
    x.grad = None
    attn.zero_grad(set_to_none=True)
    base = _rss_mb()
    run().sum().backward()
    return {"kind": kind, "seq_len": seq_len, "peak_mb_above_inputs": round(_peak_mb() - base, 1)}


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


def _child(args: list[str], threads: int) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--one", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
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
    memory = {kind: _child(["memory", kind, "2048"], args.threads) for kind in ("plain", "relative")}
    memory["ratio_relative_to_plain"] = round(
        memory["relative"]["peak_mb_above_inputs"] / max(memory["plain"]["peak_mb_above_inputs"], 1e-6), 3
    )
    report["attention_memory_L2048"] = memory
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
