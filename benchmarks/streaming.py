"""Items/s of the streaming (shard) loader against the in-memory dataset, per family, and whether the
loader is the bottleneck of a tiny-model training step (docs/streaming.md).

For each family (music, lyrics, voice, vocoder) the demo data (or --data) is built once in memory
(the family's own `build`, features cached) and once from shards written by `cinematic data shard`.
Then, with the training order (`EpochSampler`) and the family's collate function:

- `loader_items_per_s`: items/s of a DataLoader over each dataset, with 0 and `--workers` worker
  processes, after one warm-up batch (median of `--repeats`);
- `step`: steps/s of the tiny model's training step (forward, backward, AdamW) on batches already in
  memory and fed by the streaming loader with `--workers` workers; `loader_headroom` is the streaming
  loader's items/s over the items/s the step consumes (the loader is the bottleneck below 1). The
  headroom is the steadier verdict on a shared machine: two step rates measured one after the other
  differ by more than the loader's share when other work comes and goes.

    .venv/bin/python benchmarks/streaming.py [--data DIR] [--work DIR] [--items 128] [--steps 12]
          [--workers 2] [--threads 2] [--only music,lyrics]

Prints JSON. (The preemption-check overhead and the compile/activation-checkpointing figures are in
the trainer benchmarks, not here.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from cinematic import registry
from cinematic.cli import main as cli
from cinematic.data.sampler import EpochSampler
from cinematic.tasks.sharded import ShardedTask
from cinematic.training.task import BuildContext

FAMILIES = ("music", "lyrics", "voice", "vocoder")
DATA = {"music": "music", "lyrics": "lyrics", "voice": "voice", "vocoder": "voice"}
OVERRIDES = ["voice_model.speaker_encoder=false", "training.batch_size=4"]


def batches(built: Any, dataset: Any, batch_size: int, workers: int, seed: int = 0) -> Iterator[Any]:
    """Batches of epoch after epoch, as the trainer draws them (persistent workers, the epoch passed to
    the sampler and to a dataset with per-epoch randomness)."""
    sampler = EpochSampler(len(dataset), seed=seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=built.collate_fn,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch") and workers == 0:  # workers hold copies: they keep epoch 0
            dataset.set_epoch(epoch)
        yield from loader


def items_per_s(built: Any, dataset: Any, items: int, batch_size: int, workers: int, repeats: int) -> float:
    stream = batches(built, dataset, batch_size, workers)
    for _ in range(max(1, 2 * workers)):
        next(stream)  # workers started, their first batches read
    rates = []
    for _ in range(repeats):
        start, n = time.perf_counter(), 0
        for batch in itertools.islice(stream, max(1, items // batch_size)):
            n += batch_size
            del batch
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def step_rate(task: Any, built: Any, batches: Any, steps: int) -> float:
    """Steps/s of the family's training step on `batches` (an iterator), every phase in order."""
    models = built.models
    for model in models.values():
        model.train()
    params = [p for m in models.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    phases = [phase.name for phase in built.resolved_phases()]

    def one(batch: Any) -> None:
        scratch: dict[str, Any] = {}
        for phase in phases:
            out = task.training_step(models, batch, phase, scratch)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    one(next(batches))  # warm-up
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        one(batch)
    return steps / (time.perf_counter() - start)


def measure(family: str, data: Path, shards: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = registry.load_config("tiny", OVERRIDES)
    cfg.training.work_dir = str(work)
    ctx = BuildContext(run_dir=work / "bench", cache_dir=work / "cache", device=torch.device("cpu"))
    torch.manual_seed(0)
    raw_task = registry.get(family).task_instance()
    raw = raw_task.build(cfg, data, ctx)
    torch.manual_seed(0)
    task = ShardedTask(registry.get(family).task_instance(), str(shards))
    streamed = task.build(cfg, shards, ctx)
    batch = cfg.training.batch_size
    result: dict[str, Any] = {"train_items": len(streamed.train_set), "batch_size": batch}
    for name, built in (("in_memory", raw), ("streaming", streamed)):
        result[name] = {
            f"loader_items_per_s_workers{w}": round(
                items_per_s(built, built.train_set, args.items, batch, w, args.repeats), 1
            )
            for w in (0, args.workers)
        }
    cached = list(itertools.islice(batches(raw, raw.train_set, batch, 0), args.steps + 1))
    fed = step_rate(task, streamed, iter(cached), args.steps)
    stream = batches(streamed, streamed.train_set, batch, args.workers)
    for _ in range(2 * args.workers):
        next(stream)  # workers started (the trainer starts them once per run)
    live = step_rate(task, streamed, stream, args.steps)
    consumed = fed * batch  # items/s the step takes when loading costs nothing
    delivered = result["streaming"][f"loader_items_per_s_workers{args.workers}"]
    result["step"] = {
        "steps_per_s_batches_in_memory": round(fed, 2),
        "steps_per_s_streaming_loader": round(live, 2),
        "step_items_per_s": round(consumed, 1),
        "loader_headroom": round(delivered / consumed, 1),
        "loader_is_bottleneck": delivered < consumed,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="data folder with music/ lyrics/ voice/ (default: the demo data)")
    parser.add_argument("--work", help="work folder (shards, caches); default a temporary one")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=",".join(FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        data = Path(args.data) if args.data else work / "data"
        if not args.data and not data.is_dir():
            from cinematic.data.demo import write_demo_data

            write_demo_data(data, seed=0)
        report: dict[str, Any] = {"threads": args.threads, "workers": args.workers, "families": {}}
        for family in args.only.split(","):
            shards = work / "shards" / family
            if not (shards / "cinematic_shards.json").is_file():
                sets = [x for o in OVERRIDES for x in ("--set", o)]
                command = ["data", "shard", family, str(data / DATA[family]), "--out", str(shards)]
                start = time.perf_counter()
                assert cli([*command, "--work_dir", str(work), "--config", "tiny", *sets]) == 0
                report["families"].setdefault(family, {})["shard_seconds"] = round(
                    time.perf_counter() - start, 1
                )
            report["families"].setdefault(family, {}).update(
                measure(family, data / DATA[family], shards, work, args)
            )
            print(json.dumps({family: report["families"][family]}), flush=True)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
