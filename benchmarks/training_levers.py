"""What the scale levers of docs/scale.md cost or save, as JSON.

1. `preemption_check`: the per-step agreement on the preemption flag (`PreemptionWatch.agreed`: one
   all-reduce of one int32 on a gloo group, in flight during the next step) between 2 processes on
   this machine, each training the tiny-preset Music Transformer and then GPT under DDP (one thread
   each; the smallest steps: the worst case): median time spent in the check against the median step.
2. `levers`: one training step (forward, backward, AdamW) of a small Music Transformer and a small
   lyrics GPT (4 layers, width 256, 256 tokens, batch 4, dropout 0.1), eager, with activation
   checkpointing, and compiled (`torch.compile`, inductor): median step time (after warm-up and, for
   compile, after the compilation, which is reported apart), by wall clock and by the process's CPU
   time (all its threads: the steadier figure on a shared machine), the process's peak resident
   memory, and the bytes autograd saves for backward (eager and checkpointed; not measurable inside
   compiled code).
   Each configuration runs in a fresh process so the peak memory is its own.

    .venv/bin/python benchmarks/training_levers.py [--steps 4] [--threads 2] [--out levers.json]
        [--only preemption|levers]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

SMALL = {"layers": 4, "width": 256, "heads": 4, "seq": 256, "batch": 4}
TINY = {"layers": 2, "width": 64, "heads": 2, "seq": 128, "batch": 4}  # the tiny preset's sizes


def build(model: str, size: dict[str, int]) -> tuple[torch.nn.Module, Any]:
    """(model, loss(model, tokens)) for 'music' or 'gpt' at `size`, dropout 0.1."""
    if model == "music":
        from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

        cfg = MusicTransformerConfig(
            vocab_size=391,
            num_layers=size["layers"],
            num_heads=size["heads"],
            embed_dim=size["width"],
            dropout=0.1,
            max_relative_position=size["seq"],
        )

        def music_loss(net: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
            logits = net(tokens[:, :-1])
            return torch.nn.functional.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten())

        return MusicTransformer(cfg), music_loss
    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig

    cfg = LyricsGPTConfig(
        vocab_size=640,
        block_size=size["seq"],
        n_layer=size["layers"],
        n_head=size["heads"],
        n_embd=size["width"],
        dropout=0.1,
    )
    return LyricsGPT(cfg), lambda net, tokens: net(tokens[:, :-1], targets=tokens[:, 1:])[1]


def saved_activations(net: torch.nn.Module, sizes: dict[int, int]) -> Any:
    """Record into `sizes` ({storage pointer: bytes}) every tensor autograd saves for the backward pass
    of a forward run in this context, the weights left out: the activation memory of a step. Inside a
    checkpointed block the checkpoint's own hooks take over, so only what it keeps is seen."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)


def time_steps(model: str, size: dict[str, int], lever: str, steps: int, warmup: int) -> dict[str, Any]:
    """Median training-step time of one configuration (run in its own process for the memory peak)."""
    from cinematic.training.speed import checkpoint_blocks, compile_model

    torch.manual_seed(0)
    net, loss_fn = build(model, size)
    net.train()
    if lever == "activation_checkpointing":
        checkpoint_blocks(net)
    if lever == "compile":
        compile_model(net, model, torch.device("cpu"))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    tokens = torch.randint(0, 391 if model == "music" else 640, (size["batch"], size["seq"] + 1))
    times, cpu_times = [], []
    saved: dict[int, int] = {}
    for index in range(warmup + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        if index == 0 and lever != "compile":  # what autograd keeps for backward (not compiled code)
            with saved_activations(net, saved):
                loss = loss_fn(net, tokens)
        else:
            loss = loss_fn(net, tokens)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    out: dict[str, Any] = {
        "step_s": statistics.median(times[warmup:]),
        "step_cpu_s": statistics.median(cpu_times[warmup:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    if saved:
        out["saved_activations_mb"] = sum(saved.values()) / 2**20
    if lever == "compile":
        out["first_step_s (compiles)"] = times[0]
        out["compiled"] = getattr(net, "_compiled_call_impl", None) is not None
    return out


def _in_fresh_process(args: list[str], threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=1800
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ preemption check


def _check_worker(rank: int, port: int, steps: int, queue: Any) -> None:
    """One of 2 ranks: tiny-preset DDP training steps (one thread), each followed by the trainer's
    preemption check; rank 0 reports the median step and the median time spent in the check."""
    import torch.distributed as dist

    from cinematic.training.distributed import DistEnv
    from cinematic.training.preemption import PreemptionWatch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    out: dict[str, Any] = {}
    for model in ("music", "gpt"):
        watch = PreemptionWatch(DistEnv(rank=rank, world_size=2, wait_group=dist.group.WORLD))
        torch.manual_seed(0)
        net, loss_fn = build(model, TINY)
        # DDP as in the trainer: its gradient all-reduce keeps the ranks in step, as in a real run.
        net = torch.nn.parallel.DistributedDataParallel(net)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        tokens = torch.randint(0, 391 if model == "music" else 640, (TINY["batch"], TINY["seq"] + 1))
        step_times, check_times = [], []
        for _ in range(steps + 5):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net, tokens).backward()
            optimizer.step()
            middle = time.perf_counter()
            watch.agreed()
            step_times.append(middle - start)
            check_times.append(time.perf_counter() - middle)
        watch._drain()
        step, check = statistics.median(step_times[5:]), statistics.median(check_times[5:])
        out[f"{model}_tiny_step_ms"] = step * 1e3
        out[f"{model}_check_us"] = check * 1e6
        out[f"{model}_check_mean_us"] = statistics.mean(check_times[5:]) * 1e6
        out[f"{model}_overhead_percent"] = 100 * check / step
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


def preemption_check(steps: int) -> dict[str, Any]:
    """The check's cost inside real tiny-model steps on 2 ranks (gloo, one thread each)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_check_worker, args=(rank, port, steps, queue)) for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return {**queue.get(), "goal_percent": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration (after 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--check-steps", type=int, default=40, help="tiny steps timed with the preemption check"
    )
    parser.add_argument("--only", choices=["preemption", "levers"])
    parser.add_argument("--out")
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODEL", "SIZE", "LEVER", "STEPS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        model, size, lever, steps = args.worker
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        sizes = {"tiny": TINY, "small": SMALL}
        print(json.dumps(time_steps(model, sizes[size], lever, int(steps), warmup=1)))
        return
    result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "small_size": SMALL}
    if args.only in (None, "preemption"):
        result["preemption_check"] = preemption_check(args.check_steps)
        print(json.dumps(result["preemption_check"]), file=sys.stderr)
    if args.only in (None, "levers"):
        levers: dict[str, Any] = {}
        for model in ("music", "gpt"):
            for lever in ("eager", "activation_checkpointing", "compile"):
                levers[f"{model}/{lever}"] = _in_fresh_process(
                    ["--worker", model, "small", lever, str(args.steps)], args.threads
                )
                print(model, lever, json.dumps(levers[f"{model}/{lever}"]), file=sys.stderr)
            eager = levers[f"{model}/eager"]
            for lever in ("activation_checkpointing", "compile"):
                other = levers[f"{model}/{lever}"]
                if "step_s" in other and "step_s" in eager:
                    other["time_vs_eager"] = other["step_s"] / eager["step_s"]
                    other["cpu_time_vs_eager"] = other["step_cpu_s"] / eager["step_cpu_s"]
                    other["peak_rss_mb_vs_eager"] = other["peak_rss_mb"] - eager["peak_rss_mb"]
        result["levers"] = levers
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
