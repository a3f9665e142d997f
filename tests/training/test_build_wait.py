"""Start-up under torchrun: local rank 0 prepares the data (`BuildContext.local_main_first`) while the
other ranks wait, for longer than the process group's timeout, without anyone timing out (2 gloo
processes)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch.multiprocessing as mp

from cinematic.training import distributed as D
from cinematic.training.task import BuildContext

WORK_S = 4.0
"""How long local rank 0 'extracts features': twice the process group's timeout below."""


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            D.DIST_TIMEOUT_ENV: str(WORK_S / 2 / 60),  # 2 s: a collective waiting 4 s would time out
        }
    )
    env = D.init_distributed()
    folder = Path(out)
    ctx = BuildContext(
        run_dir=folder, cache_dir=folder, device=env.device, rank=rank, local_rank=rank, world_size=2,
        barrier=env.wait_for_others,
    )  # fmt: skip
    record = {"called": time.time()}
    with ctx.local_main_first() as first:
        record["entered"] = time.time()
        cache = folder / "features.json"
        if first:
            time.sleep(WORK_S)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"features": list(range(100))}))
            os.replace(tmp, cache)
        else:
            record["read"] = len(json.loads(cache.read_text())["features"])
        record["done"] = time.time()
    record["released"] = time.time()
    env.barrier()  # the process group itself still works afterwards
    D.shutdown(env)
    (folder / f"rank{rank}.json").write_text(json.dumps(record))


def test_rank_0_prepares_first_the_others_wait_past_the_group_timeout(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r1["entered"] >= r0["done"]  # the others start only once rank 0 has finished
    assert r1["read"] == 100  # and find its complete cache
    assert r1["entered"] - r1["called"] >= WORK_S - 0.5  # they did wait, longer than the timeout
    assert r0["released"] >= r0["done"]
