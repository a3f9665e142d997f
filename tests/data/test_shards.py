"""Shard storage (`cinematic.data.shards`) and the epoch order over shards (`EpochSampler`,
`DataPosition`): records round-trip, parts written by several ranks merge into one index, a re-run
keeps finished parts and redoes a crashed one, bad chunks are named (or skipped), ranks share an epoch
without overlap, and a resume on another world size finishes the epoch with no item repeated or skipped."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cinematic.data.sampler import EpochSampler
from cinematic.data.shards import (
    PARTS,
    ShardSource,
    decode_record,
    encode_record,
    is_shard_source,
    merge_parts,
    rank_block,
    write_part,
)
from cinematic.errors import UserError


def test_records_round_trip_with_their_types():
    record = {
        "tokens": np.arange(5, dtype=np.int16),
        "mel": torch.randn(3, 4),
        "speaker": 3,
        "gain": 0.5,
        "text": "día",
        "durations": None,
        "flag": True,
        "labels": [{"key": "C"}, {"mode": "major"}],
    }
    back = decode_record(encode_record(record))
    assert back.keys() == record.keys()
    assert back["tokens"].dtype == np.int16 and np.array_equal(back["tokens"], record["tokens"])
    assert isinstance(back["mel"], torch.Tensor) and torch.equal(back["mel"], record["mel"])
    assert (back["speaker"], back["gain"], back["text"], back["durations"], back["flag"]) == (
        3,
        0.5,
        "día",
        None,
        True,
    )
    assert back["labels"] == record["labels"]
    with pytest.raises(TypeError, match="object"):
        encode_record({"bad": object()})


def _records(n: int, size: int = 700) -> list[dict]:
    return [{"id": i, "x": np.full(size, i, dtype=np.int32)} for i in range(n)]


def _write(out: Path, records: list[dict], world_size: int, chunk_bytes: int = 6000) -> list[str]:
    """What `cinematic data shard` does with `world_size` ranks (each writes its block), then rank 0."""
    keys = []
    for rank in range(world_size):
        block = rank_block(len(records), rank, world_size)
        keys.append(write_part(out, "toy", block, (records[i] for i in block), chunk_bytes)["key"])
    manifest = {"task": "toy", "family": "toy", "train_count": len(records) - 2, "val_count": 2, "meta": {}}
    merge_parts(out, keys, manifest, {"vocab": ["a", "b"]})
    return keys


def test_parts_of_several_ranks_read_back_as_one_list_in_order(tmp_path):
    records = _records(23)
    _write(tmp_path, records, world_size=3)
    assert is_shard_source(tmp_path) and not is_shard_source(tmp_path / PARTS)
    source = ShardSource.open(tmp_path)
    assert len(source.chunks) > 3  # several chunks per part
    assert source.state == {"vocab": ["a", "b"]}
    assert source.train_ids == list(range(21)) and source.val_ids == [21, 22]
    for i in (0, 7, 8, 15, 22):
        assert source.record(i)["id"] == i and np.array_equal(source.record(i)["x"], records[i]["x"])


def test_a_rerun_keeps_finished_parts_and_redoes_a_crashed_one(tmp_path):
    records = _records(12)
    keys = _write(tmp_path, records, world_size=2)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.bin")}
    # rank 1 "crashed" in the next run: its chunks are there, its done mark is not
    (tmp_path / PARTS / f"{keys[1]}.json").unlink()
    stray = tmp_path / "0123456789abcdef-0.bin"
    stray.write_bytes(b"half")  # an older run's chunk: removed by the merge
    assert _write(tmp_path, records, world_size=2) == keys
    again = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.bin")}
    assert again.keys() == first.keys() and not stray.exists()
    assert all(again[n] == first[n] for n in first if n.startswith(keys[0]))  # rank 0's part kept
    source = ShardSource.open(tmp_path)
    assert [source.record(i)["id"] for i in range(12)] == list(range(12))
    records[3]["x"][0] = -1  # changed content: a new part for that block
    assert _write(tmp_path, records, world_size=2)[0] != keys[0]


def test_missing_or_truncated_chunks_are_named_or_skipped(tmp_path):
    _write(tmp_path, _records(20), world_size=1)
    chunks = json.loads((tmp_path / "index.json").read_text())["chunks"]
    truncated, missing = tmp_path / chunks[1]["filename"], tmp_path / chunks[2]["filename"]
    with open(truncated, "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(UserError, match=f"bad shard {truncated}: 10 bytes"):
        ShardSource.open(tmp_path)
    missing.unlink()
    source = ShardSource.open(tmp_path, skip_bad=True)
    assert [b.name for b in source.bad] == [str(truncated), str(missing)]
    gone = set(range(chunks[0]["chunk_size"], sum(c["chunk_size"] for c in chunks[:3])))
    assert set(source.train_ids) == set(range(18)) - gone
    assert all(source.record(i)["id"] == i for i in source.train_ids)
    (tmp_path / "cinematic_shards.json").unlink()
    with pytest.raises(UserError, match="cinematic_shards.json"):
        ShardSource.open(tmp_path)


def test_a_remote_source_is_read_through_the_cache(tmp_path, monkeypatch):
    """The object-store path (litdata's downloader and chunk cache), through litdata's `local:` URLs."""
    from cinematic.data.shards import CACHE_ENV, read_manifest

    _write(tmp_path / "shards", _records(9), world_size=1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    url = f"local:{tmp_path / 'shards'}"
    assert is_shard_source(url) and read_manifest(url)["train_count"] == 7
    source = ShardSource.open(url)
    assert source.state == {"vocab": ["a", "b"]} and source.val_ids == [7, 8]
    assert [source.record(i)["id"] for i in (8, 0, 4)] == [8, 0, 4]
    assert list((tmp_path / "cache").rglob("*.bin"))  # chunks came through the cache
    with pytest.raises(UserError, match="cannot read"):
        ShardSource.open(f"local:{tmp_path / 'nothing'}")


# --------------------------------------------------------------------------------- epoch over shards


def test_two_ranks_see_disjoint_items_covering_the_epoch():
    ranks = [EpochSampler(40, seed=5, rank=r, world_size=2) for r in range(2)]
    shares = [list(s) for s in ranks]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == list(range(40))


def _resume(size, old_world, new_world, batches_done, batch_size=2, weights=None, carry=None):
    """The items of one epoch: `batches_done` batches per rank on `old_world` ranks, then the rest
    on `new_world` ranks after a resume through `DataPosition` (as the trainer does it)."""
    from cinematic.training.loaders import DataPosition
    from cinematic.training.state import TrainState

    def position(world, rank, state):
        sampler = EpochSampler(size, seed=3, rank=rank, world_size=world, weights=weights)
        per_epoch = sampler.num_samples // batch_size  # drop_last: the sizes used here divide evenly
        return sampler, DataPosition(sampler, state, batch_size, per_epoch)

    seen = []
    saved = None
    for rank in range(old_world):
        state = TrainState(epoch=2, batch_in_epoch=0)
        sampler, pos = position(old_world, rank, state)
        sampler.set_epoch(2)
        seen += list(sampler)[: batches_done * batch_size]
        state.batch_in_epoch = batches_done
        saved = {**pos.state_dict(), "step": 0, "epoch": 2, "batch_in_epoch": batches_done}
    for rank in range(new_world):
        state = TrainState(epoch=2, batch_in_epoch=batches_done)
        sampler, pos = position(new_world, rank, state)
        pos.load_state_dict(saved)
        sampler.set_epoch(2)
        sampler.set_start(state.batch_in_epoch * batch_size)
        rest = list(sampler)
        assert state.batch_in_epoch + len(rest) // batch_size == pos.batches_per_epoch
        seen += rest
    return seen


@pytest.mark.parametrize(("old_world", "new_world", "done"), [(2, 1, 3), (1, 2, 4), (2, 3, 1), (4, 2, 2)])
def test_a_resume_on_another_world_size_finishes_the_epoch_without_repeats_or_gaps(
    old_world, new_world, done
):
    seen = _resume(48, old_world, new_world, done)
    assert set(seen) == set(range(48))
    # repeats only to pad the rest to whole batches on every rank (2 ranks → 3 after 1 batch: 44 → 48)
    assert len(seen) - 48 < new_world * 2


def test_a_resume_on_the_same_world_size_is_the_plain_tail():
    seen = _resume(48, 2, 2, 5)
    assert seen[:20] == [x for r in range(2) for x in _epoch(48, 2, r)[:10]]
    assert seen[20:] == [x for r in range(2) for x in _epoch(48, 2, r)[10:]]


def _epoch(size, world, rank):
    sampler = EpochSampler(size, seed=3, rank=rank, world_size=world)
    sampler.set_epoch(2)
    return list(sampler)


def test_weighted_draws_continue_the_same_stream_on_another_world_size():
    weights = [1.0, 3.0, 0.5, 2.0] * 6
    straight = Counter(x for r in range(2) for x in _epoch_weighted(24, 2, r, weights))
    resumed = Counter(_resume(24, 2, 3, 2, weights=weights))
    assert not straight - resumed  # every draw of the epoch, as many times
    assert (resumed - straight).total() < 3 * 2  # and the padding to whole batches


def _epoch_weighted(size, world, rank, weights):
    sampler = EpochSampler(size, seed=3, rank=rank, world_size=world, weights=weights)
    sampler.set_epoch(2)
    return list(sampler)


def test_chained_resumes_over_three_world_sizes():
    """2 ranks, then 3 from the 2-rank checkpoint, then 1 from the 3-rank one: still one epoch."""
    from cinematic.training.loaders import DataPosition
    from cinematic.training.state import TrainState

    size, batch = 60, 2
    seen, saved, done = [], None, 0
    for world, steps in ((2, 4), (3, 2), (1, None)):
        for rank in range(world):
            state = TrainState(epoch=0, batch_in_epoch=done)
            sampler = EpochSampler(size, seed=9, rank=rank, world_size=world)
            pos = DataPosition(sampler, state, batch, sampler.num_samples // batch)
            if saved is not None:
                pos.load_state_dict(saved)
            sampler.set_start(state.batch_in_epoch * batch)
            share = list(sampler)
            take = len(share) if steps is None else steps * batch
            seen += share[:take]
            last_state, last_pos = state, pos
        done = last_state.batch_in_epoch + (0 if steps is None else steps)
        last_state.batch_in_epoch = done
        saved = {**last_pos.state_dict(), "batch_in_epoch": done}
    assert sorted(seen) == list(range(size))
