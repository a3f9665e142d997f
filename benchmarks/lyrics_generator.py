"""Lyrics GPT throughput on this machine, printed as JSON.

    .venv/bin/python benchmarks/lyrics_generator.py                 # the issue's configuration
    .venv/bin/python benchmarks/lyrics_generator.py --quick         # fewer steps (a contended machine)
    .venv/bin/python benchmarks/lyrics_generator.py --nanogpt /path/to/nanoGPT/model.py   # side by side

Measures, at 6 layers × 6 heads × 384, block 256, batch 8, vocab 50304, on `--threads` CPU threads:
- training tokens/s (forward + backward + AdamW step, dropout 0, fp32), and model FLOPs utilization:
  (6N + 12·L·H·Q·T) FLOPs per token × tokens/s ÷ the measured fp32 matmul peak of this machine;
- sampling tokens/s for `--sample_tokens` new tokens, batch 1, with the KV cache and without it
  (the whole sequence through the model at every step), and their ratio;
- with `--nanogpt`, the same training loop on karpathy/nanoGPT's `GPT` at the same configuration
  (bias=False, dropout 0, the same AdamW groups), timed alternately with ours.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch
from common import matmul_peak_flops

from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig
from cinematic.training.optimizers import param_groups


def train_rate(model: torch.nn.Module, batch: int, block: int, vocab: int, steps: int, warmup: int) -> float:
    """Training tokens per second of `model(idx, targets) -> (logits, loss)` with AdamW."""
    model.train()
    optimizer = torch.optim.AdamW(param_groups([model], 0.1), lr=1e-4, betas=(0.9, 0.95))
    data = torch.randint(
        0, vocab, (steps + warmup, batch, block + 1), generator=torch.Generator().manual_seed(0)
    )
    for i in range(steps + warmup):
        if i == warmup:
            start = time.perf_counter()
        x, y = data[i, :, :-1].contiguous(), data[i, :, 1:].contiguous()
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch * block / (time.perf_counter() - start)


@torch.no_grad()
def sample_rate(model: LyricsGPT, new_tokens: int, cached: bool, prompt: int = 8) -> float:
    """New tokens per second at batch 1 (greedy, so both paths do the same work per token)."""
    model.eval()
    tokens = torch.randint(
        0, model.config.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(1)
    )
    start = time.perf_counter()
    if cached:
        cache = model.new_cache(prompt + new_tokens)
        logits, _ = model(tokens, cache=cache, last_only=True)
        for _ in range(new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            logits, _ = model(nxt, cache=cache, last_only=True)
    else:
        for _ in range(new_tokens):
            logits, _ = model(tokens, last_only=True)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return new_tokens / (time.perf_counter() - start)


def load_nanogpt(path: Path):
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--embed_dim", type=int, default=384)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sample_tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (the best is kept)")
    parser.add_argument("--quick", action="store_true", help="3 steps, 1 warmup, 1 round: for a busy machine")
    parser.add_argument("--nanogpt", type=Path, help="path to karpathy/nanoGPT's model.py for a side-by-side")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds = 3, 1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = LyricsGPTConfig(
        vocab_size=args.vocab, block_size=args.block, n_layer=args.layers, n_head=args.heads,
        n_embd=args.embed_dim, dropout=0.0, bias=False,
    )  # fmt: skip
    ours = LyricsGPT(config)
    theirs = None
    if args.nanogpt:
        nano = load_nanogpt(args.nanogpt)
        theirs = nano.GPT(nano.GPTConfig(
            block_size=args.block, vocab_size=args.vocab, n_layer=args.layers, n_head=args.heads,
            n_embd=args.embed_dim, dropout=0.0, bias=False,
        ))  # fmt: skip

    peak = matmul_peak_flops()
    flops_per_token = ours.flops_per_token(args.block)
    ours_rates, theirs_rates = [], []
    runs = [(ours, ours_rates)] + ([(theirs, theirs_rates)] if theirs is not None else [])
    for round_index in range(args.rounds):  # interleaved, first one then the other first: fair under load
        for model, rates in runs if round_index % 2 == 0 else runs[::-1]:
            rates.append(train_rate(model, args.batch, args.block, args.vocab, args.steps, args.warmup))
    peak = max(peak, matmul_peak_flops())
    train_tps = max(ours_rates)
    cached = sample_rate(ours, args.sample_tokens, cached=True)
    uncached = sample_rate(ours, args.sample_tokens, cached=False)

    result = {
        "benchmark": "lyrics_generator",
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
        "config": {"layers": args.layers, "heads": args.heads, "embed_dim": args.embed_dim, "block": args.block,
                   "batch": args.batch, "vocab": args.vocab, "params": ours.num_params(), "steps": args.steps,
                   "rounds": args.rounds},
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "train_tokens_per_s": round(train_tps, 1),
        "train_tokens_per_s_rounds": [round(r, 1) for r in ours_rates],
        "flops_per_token": flops_per_token,
        "mfu": round(flops_per_token * train_tps / peak, 4),
        "sample_tokens": args.sample_tokens,
        "sample_tokens_per_s_cached": round(cached, 1),
        "sample_tokens_per_s_uncached": round(uncached, 1),
        "cache_speedup": round(cached / uncached, 2),
    }  # fmt: skip
    if theirs is not None:
        best = max(theirs_rates)
        result["nanogpt_train_tokens_per_s"] = round(best, 1)
        result["nanogpt_train_tokens_per_s_rounds"] = [round(r, 1) for r in theirs_rates]
        result["train_ratio_vs_nanogpt"] = round(train_tps / best, 3)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
